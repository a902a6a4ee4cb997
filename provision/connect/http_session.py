"""One MCP streamable-HTTP session, seen by the proxy as a server process with stdin, stdout and stderr.

The proxy's :class:`~provision.connect.link.Link` relays a server process: it writes JSON-RPC lines to
its stdin and reads lines from its stdout. :class:`HttpSession` is that process for a server reached
over HTTP, so the link (its firewall, its waiters, the proxy's replay and reconnect) works unchanged:

- each line written to stdin is POSTed to the endpoint with the API key, the session id and the
  protocol version headers; the answer (JSON, or the events of an SSE stream) comes out of stdout as
  lines;
- once the server gives a session id, a GET event stream carries what the server sends on its own,
  and tells when the server goes away (its end is the process ending);
- a POST that cannot connect (the server restarting, nothing sent yet) is tried again for a while, so
  a restart between two calls costs the client nothing; a request cut off mid-answer, or a session the
  server no longer knows (it restarted), ends the "process": the proxy answers what was in flight
  with its error and opens a new session, replaying the handshake;
- what goes wrong is written to stderr as text, which the link copies to the proxy's log.

The key is sent as ``X-API-Key`` and never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

log = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
# The 2026-07-28 HTTP wire mirrors the method, and the name these methods act on, in headers.
NAME_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
RETRY_WINDOW = 30.0  # seconds a POST that cannot connect is tried again (a server restarting)
_RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
_EOF = b""


def header_value(value: str) -> str:
    """``value`` as an HTTP header value: verbatim when plain printable ASCII, else MCP's base64 form."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not value.startswith("=?base64?"):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


class _Pipe:
    """A stream of chunks with ``read``, as asyncssh's process streams have it; ``b""`` once ended."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._ended = False

    def put(self, data: bytes) -> None:
        if not self._ended and data:
            self._queue.put_nowait(data)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_EOF)

    async def read(self, _size: int = -1) -> bytes:
        data = await self._queue.get()
        if data == _EOF:
            self._queue.put_nowait(_EOF)  # every later read sees the end too
        return data


class _Stdin:
    """The session's stdin: each written line becomes a POST."""

    def __init__(self, session: HttpSession) -> None:
        self._session = session

    def write(self, data: bytes) -> None:
        for line in data.splitlines():
            if line.strip():
                self._session.post(line)

    async def drain(self) -> None:
        return None

    def write_eof(self) -> None:
        self._session.finish()


class HttpSession:
    """An MCP session with the server at ``url``, as a process (see the module docstring).

    Args:
        url: The MCP endpoint (``http://127.0.0.1:P/mcp`` through a tunnel, or ``https://.../mcp``).
        key: The API key.
        alive: Whether the way to the server still exists (the SSH tunnel); a failed connect while it
            does not ends the session at once instead of trying again.
    """

    def __init__(self, url: str, key: str, *, alive: Callable[[], bool] = lambda: True) -> None:
        self.url = url
        self.stdin = _Stdin(self)
        self.stdout = _Pipe()
        self.stderr = _Pipe()
        self.returncode: int | None = None
        self._key = key
        self._alive = alive
        self._client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(30.0, read=None), trust_env=False, follow_redirects=False
        )
        self._session_id: str | None = None
        self._version: str | None = None  # negotiated by initialize (handshake-era clients)
        self._initialize_id: Any = None
        self._handshake = asyncio.Event()  # set once no initialize is waiting for its session id
        self._handshake.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()

    # --------------------------------------------------------------------------- process surface

    def post(self, line: bytes) -> None:
        """Send one client line (in a task of its own: answers may stream for a long time)."""
        if self.returncode is not None:
            return
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("method") == "initialize" and "id" in message:
            self._initialize_id = message["id"]
            self._session_id, self._version = None, None
            self._handshake.clear()
            self._spawn(self._post(line, message, waits=False))
            return
        self._spawn(self._post(line, message, waits=True))

    def finish(self) -> None:
        """stdin closed: end once the answers in flight are in."""
        self._closing = True
        self._spawn(self._end_when_idle())

    def close(self) -> None:
        """End now: stop every request and the event stream."""
        if self.returncode is None:
            self._end(0 if self._closing else 1, None)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # --------------------------------------------------------------------------------- internals

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _say(self, text: str) -> None:
        self.stderr.put(f"mcpctl http: {text}\n".encode())

    def _end(self, code: int, why: str | None) -> None:
        if self.returncode is not None:
            return
        if why is not None:
            self._say(why)
        self.returncode = code
        self.stdout.end()
        self.stderr.end()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._spawn(self._shut())

    async def _shut(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.aclose(), 5.0)
        self._closed.set()

    async def _end_when_idle(self) -> None:
        current = asyncio.current_task()
        while pending := {t for t in self._tasks if t is not current and t is not self._listener}:
            await asyncio.wait(pending)
        if self._session_id is not None:  # the client is done: let the server free the session now
            headers = self._headers(None)
            with contextlib.suppress(httpx2.HTTPError, asyncio.TimeoutError):
                await asyncio.wait_for(self._client.delete(self.url, headers=headers), 2.0)
        self._end(0, None)

    def _headers(self, message: Any) -> dict[str, str]:
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "x-api-key": self._key,
        }
        if self._session_id:
            headers[SESSION_HEADER] = self._session_id
        params = message.get("params") if isinstance(message, dict) else None
        meta = params.get("_meta") if isinstance(params, dict) else None
        version = meta.get(META_VERSION) if isinstance(meta, dict) else None
        version = version if isinstance(version, str) else self._version
        if version:
            headers[VERSION_HEADER] = version
        method = message.get("method") if isinstance(message, dict) else None
        if isinstance(method, str):
            headers[METHOD_HEADER] = header_value(method)
            name = params.get(NAME_PARAMS.get(method, "")) if isinstance(params, dict) else None
            if isinstance(name, str):
                headers[NAME_HEADER] = header_value(name)
        return headers

    def _emit(self, message: Any) -> None:
        """One message from the server to stdout (noting the version an initialize answer negotiates)."""
        if isinstance(message, list):
            for item in message:
                self._emit(item)
            return
        answers_initialize = self._initialize_id is not None and isinstance(message, dict)
        if answers_initialize and message.get("id") == self._initialize_id:
            result = message.get("result")
            if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
                self._version = result["protocolVersion"]
        self.stdout.put(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def _post(self, line: bytes, message: Any, *, waits: bool) -> None:
        if waits:
            await self._handshake.wait()  # the session id comes with the initialize answer
        try:
            await self._post_with_retry(line, message)
        except httpx2.HTTPError as exc:
            self._end(1, f"the server stopped answering ({type(exc).__name__}: {exc or 'no detail'})")
        finally:
            if not waits:
                self._handshake.set()

    async def _post_with_retry(self, line: bytes, message: Any) -> None:
        deadline = time.monotonic() + RETRY_WINDOW
        attempt = 0
        while True:
            try:
                async with self._client.stream(
                    "POST", self.url, content=line, headers=self._headers(message)
                ) as response:
                    await self._answer(response, message)
                return
            except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
                # Nothing reached the server: trying again is safe, and rides out a restart.
                if not self._alive() or time.monotonic() >= deadline:
                    raise
                delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
                if attempt == 0:
                    self._say(f"cannot connect ({exc or type(exc).__name__}); trying again")
                attempt += 1
                await asyncio.sleep(delay)

    async def _answer(self, response: httpx2.Response, message: Any) -> None:
        """Pass the server's answer to one POST on to stdout, or end the session when it cannot go on."""
        request_id = message.get("id") if isinstance(message, dict) and "method" in message else None
        status = response.status_code
        if status == 404 and self._session_id is not None:
            self._end(1, "the server no longer knows this session (it restarted); a new one is opened")
            return
        if status in (401, 403):
            body = (await response.aread()).decode("utf-8", "replace")[:300]
            self._end(1, f"the server refused the API key (HTTP {status}): {body}")
            return
        session = response.headers.get(SESSION_HEADER)
        if status < 300 and session and session != self._session_id:
            self._session_id = session
            if self._listener is None:
                self._listener = self._spawn(self._listen())
        if status == 202 or (request_id is None and status < 300):
            return
        kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if status < 300 and kind == "text/event-stream":
            await self._relay_events(response, answers=request_id)
        elif kind == "application/json":
            content = await response.aread()
            try:
                self._emit(json.loads(content))
            except ValueError:
                self._fail(request_id, f"the server answered HTTP {status} with invalid JSON")
        else:
            self._fail(request_id, f"the server answered HTTP {status} ({kind or 'no content type'})")

    def _fail(self, request_id: Any, text: str) -> None:
        self._say(text)
        if request_id is not None:
            self._emit({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32603, "message": text}})

    async def _relay_events(self, response: httpx2.Response, *, answers: Any) -> None:
        answered = False
        async for event in httpx2.EventSource(response):
            if event.event != "message" or not event.data:
                continue
            try:
                message = json.loads(event.data)
            except ValueError:
                self._say(f"dropped an event that is not JSON: {event.data[:200]!r}")
                continue
            self._emit(message)
            if isinstance(message, dict) and "method" not in message and message.get("id") == answers:
                answered = True
                break
        if answers is not None and not answered:
            self._end(1, "the server ended its answer stream before answering (it stopped?)")

    async def _listen(self) -> None:
        """The session's GET event stream: server-sent messages, and its end tells the server went away."""
        headers = self._headers(None)
        headers["accept"] = "text/event-stream"
        try:
            async with self._client.stream("GET", self.url, headers=headers) as response:
                if response.status_code != 200:
                    return  # no stream offered (405): the POSTs alone notice a restart
                async for event in httpx2.EventSource(response):
                    if event.event == "message" and event.data:
                        with contextlib.suppress(ValueError):
                            self._emit(json.loads(event.data))
        except httpx2.HTTPError as exc:
            self._end(1, f"the server's event stream broke ({type(exc).__name__})")
            return
        if not self._closing:
            self._end(1, "the server closed its event stream (it stopped or restarted)")


__all__ = ["RETRY_WINDOW", "HttpSession"]
