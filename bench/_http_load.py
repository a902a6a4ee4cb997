"""Closed-loop load for ``bench http``, run in a process of its own: N clients, each one MCP session
calling one tool again and again, one call in flight per client.

The clients are as cheap as a client can be in Python, so the generator does not eat the cores the
server needs: one event loop (uvloop when available), raw HTTP/1.1 on keep-alive sockets with
pre-built JSON-RPC bodies (no HTTP or MCP client library), one ``initialize`` per session. Shapes:

- ``streamable``: POST ``/mcp``; a JSON or an event-stream answer, stateful (``Mcp-Session-Id``) or not;
- ``sse``: one ``GET /sse`` stream per client, calls POSTed to its message endpoint (202), answers read
  from the stream;
- ``stdio``: one child process per client (``mcpctl connect``), newline-delimited JSON-RPC on its pipes.

Every session is opened and warmed up first; then, for each client count in turn, that many sessions
call for a fixed time; every call started in that window counts, and the window lasts until the last
of them is answered. CPU seconds of the server's process tree (given by pid), of this process and of
its children (the stdio relays) are read from /proc at the window's edges.

``python -m bench._http_load SPEC_JSON`` writes one JSON object, one result per client count, to the
file named by the spec's ``out``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

PROTOCOL = "2025-11-25"
TIMEOUT = 60.0  # seconds: an upper bound on any single exchange


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _trees_cpu(server: int | None, me: int) -> tuple[dict[str, float], float]:
    """CPU seconds of the server's whole tree by command name (sshd, python...), and of this process's
    children (the stdio relays)."""
    children = _children()
    by_name: dict[str, float] = {}
    for pid in [server, *descendants(server, children)] if server else []:
        name = _comm(pid)
        by_name[name] = by_name.get(name, 0.0) + cpu_seconds(pid)
    return by_name, sum(cpu_seconds(pid) for pid in descendants(me, children))


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def _message(request_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


INITIALIZE = {
    "protocolVersion": PROTOCOL,
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "0"},
}
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


def _check(answer: dict[str, Any], what: str) -> dict[str, Any]:
    if "result" not in answer:
        raise RuntimeError(f"{what} failed: {json.dumps(answer)[:300]}")
    result = answer["result"]
    if isinstance(result, dict) and result.get("isError"):
        raise RuntimeError(f"{what} answered a tool error: {json.dumps(result)[:300]}")
    return answer


class Http:
    """One keep-alive HTTP/1.1 connection; requests one at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.base = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connected(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is not None and self.reader.at_eof():
            self.close()  # the server closed an idle keep-alive connection (uvicorn: after 5 s)
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def head(self, method: str, path: str, extra: str = "", length: int | None = None) -> bytes:
        body = f"Content-Length: {length}\r\n" if length is not None else ""
        return f"{method} {path} HTTP/1.1\r\n{self.base}{extra}{body}\r\n".encode()

    async def send(self, method: str, path: str, extra: str = "", body: bytes = b"") -> None:
        _, writer = await self._connected()
        writer.write(self.head(method, path, extra, len(body) if method == "POST" else None) + body)

    async def response_head(self) -> tuple[int, dict[str, str]]:
        reader, _ = await self._connected()
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def chunks(self, headers: dict[str, str]) -> Any:
        """The body's pieces as they arrive (chunked, or one Content-Length piece)."""
        reader, _ = await self._connected()
        if "content-length" in headers:
            yield await reader.readexactly(int(headers["content-length"]))
            return
        if headers.get("transfer-encoding", "").lower() != "chunked":
            return
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            chunk = await reader.readexactly(size + 2)
            yield chunk[:-2]

    async def exchange(self, path: str, extra: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        await self.send("POST", path, extra, body)
        status, headers = await self.response_head()
        data = b"".join([piece async for piece in self.chunks(headers)])
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class SseParser:
    """Server-sent events from arbitrary byte pieces: yields (event, data) pairs."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, piece: bytes) -> list[tuple[str, str]]:
        self.buffer += piece.replace(b"\r\n", b"\n")
        events = []
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            event, data = "message", []
            for line in block.decode().split("\n"):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
            if data:
                events.append((event, "\n".join(data)))
        return events


def _answer_in(data: bytes, content_type: str, request_id: int) -> dict[str, Any]:
    if content_type.startswith("text/event-stream"):
        for _event, payload in SseParser().feed(data + b"\n\n"):
            message = json.loads(payload)
            if message.get("id") == request_id and "method" not in message:
                return dict(message)
        raise RuntimeError(f"no answer to request {request_id} in the event stream: {data[:300]!r}")
    return dict(json.loads(data))


class StreamableClient:
    """One MCP session over streamable HTTP (stateful when the server hands out a session id)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.http = Http(spec["host"], spec["port"], spec.get("headers", {}))
        self.path = spec.get("path", "/mcp")
        self.extra = "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"

    async def start(self) -> None:
        status, headers, data = await self.http.exchange(
            self.path, self.extra, _message(0, "initialize", INITIALIZE)
        )
        if status != 200:
            raise RuntimeError(f"initialize: HTTP {status} {data[:300]!r}")
        _check(_answer_in(data, headers.get("content-type", ""), 0), "initialize")
        self.extra += f"MCP-Protocol-Version: {PROTOCOL}\r\n"
        if "mcp-session-id" in headers:
            self.extra += f"Mcp-Session-Id: {headers['mcp-session-id']}\r\n"
        status, _, data = await self.http.exchange(self.path, self.extra, INITIALIZED)
        if status not in (200, 202):
            raise RuntimeError(f"notifications/initialized: HTTP {status} {data[:300]!r}")

    async def call(self, request_id: int, body: bytes) -> dict[str, Any]:
        status, headers, data = await self.http.exchange(self.path, self.extra, body)
        if status != 200:
            raise RuntimeError(f"tools/call: HTTP {status} {data[:300]!r}")
        return _answer_in(data, headers.get("content-type", ""), request_id)

    async def stop(self) -> None:
        self.http.close()


class SseClient:
    """One MCP session over the legacy SSE transport: a GET stream for answers, POSTs for requests."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.stream = Http(spec["host"], spec["port"], spec.get("headers", {}))
        self.posts = Http(spec["host"], spec["port"], spec.get("headers", {}))
        self.path = spec.get("path", "/sse")
        self.endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reading: asyncio.Task[None] | None = None

    async def _read(self, headers: dict[str, str]) -> None:
        parser = SseParser()
        async for piece in self.stream.chunks(headers):
            for event, data in parser.feed(piece):
                if event == "endpoint":
                    self.endpoint.set_result(data)
                elif event == "message":
                    message = json.loads(data)
                    future = self.waiting.pop(message.get("id"), None) if "method" not in message else None
                    if future is not None and not future.done():
                        future.set_result(message)
        error = RuntimeError("the server closed the event stream")
        for future in self.waiting.values():
            future.set_exception(error)

    async def start(self) -> None:
        await self.stream.send("GET", self.path, "Accept: text/event-stream\r\n")
        status, headers = await self.stream.response_head()
        if status != 200:
            raise RuntimeError(f"GET {self.path}: HTTP {status}")
        self.reading = asyncio.create_task(self._read(headers))
        self.url = await asyncio.wait_for(self.endpoint, TIMEOUT)
        _check(await self.call(0, _message(0, "initialize", INITIALIZE)), "initialize")
        await self._post(INITIALIZED)

    async def _post(self, body: bytes) -> None:
        status, _, data = await self.posts.exchange(self.url, "Content-Type: application/json\r\n", body)
        if status not in (200, 202):
            raise RuntimeError(f"POST {self.url}: HTTP {status} {data[:300]!r}")

    async def call(self, request_id: int, body: bytes) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        await self._post(body)
        return await future

    async def stop(self) -> None:
        if self.reading is not None:
            self.reading.cancel()
        self.stream.close()
        self.posts.close()


class StdioClient:
    """One MCP session through a child process speaking newline-delimited JSON-RPC (``mcpctl connect``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.argv: list[str] = spec["argv"]
        self.env: dict[str, str] = spec["env"]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=self.env,
            limit=1 << 24,
        )
        _check(await self.call(0, _message(0, "initialize", INITIALIZE)), "initialize")
        self._write(INITIALIZED)

    def _write(self, body: bytes) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(body + b"\n")

    async def call(self, request_id: int, body: bytes) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        self._write(body)
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.argv[0]} closed its stdout (exit {self.process.returncode})")
            message = json.loads(line)
            if message.get("id") == request_id and "method" not in message:
                return dict(message)

    async def stop(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), TIMEOUT)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()


Client = StreamableClient | SseClient | StdioClient
KINDS: dict[str, Callable[[dict[str, Any]], Client]] = {
    "streamable": StreamableClient,
    "sse": SseClient,
    "stdio": StdioClient,
}


class Window:
    """The measurement window shared by the clients of one client count: every call started in it
    counts, and it lasts until the last of them has been answered (so a server slower than the window
    is still measured, by its few calls)."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.last = start
        self.latencies: list[float] = []


async def _loop(client: Client, tool: dict[str, Any], first_id: int, window: Window) -> None:
    request_id = first_id
    while True:
        request_id += 1
        body = _message(request_id, "tools/call", tool)
        started = time.perf_counter()
        if started >= window.end:
            return
        # No per-call timeout (a wait_for per call costs a task): the harness bounds the whole run.
        _check(await client.call(request_id, body), "tools/call")
        ended = time.perf_counter()
        window.latencies.append(ended - started)
        window.last = max(window.last, ended)


async def _gather(jobs: list[Awaitable[Any]], at_once: int) -> None:
    """Run ``jobs`` with at most ``at_once`` running (opening 32 SSH sessions at once is a stampede)."""
    gate = asyncio.Semaphore(at_once)

    async def one(job: Awaitable[Any]) -> None:
        async with gate:
            await job

    await asyncio.gather(*(one(job) for job in jobs))


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    counts: list[int] = spec["clients"]
    tool = {"name": spec["tool"], "arguments": spec["arguments"]}
    clients = [KINDS[spec["kind"]](spec) for _ in range(max(counts))]
    server_pid: int | None = spec.get("server_pid")
    me = os.getpid()
    try:
        await _gather([client.start() for client in clients], spec.get("start_at_once", 64))
        # Warm every session (the first call of a server process loads the query engine).
        warm = Window(0.0, time.perf_counter() + spec["warmup"])
        await asyncio.gather(*(_loop(c, tool, 1_000_000 * (i + 1), warm) for i, c in enumerate(clients)))
        results = []
        for count in counts:
            cpu_server, cpu_relays = _trees_cpu(server_pid, me)
            cpu_self = cpu_seconds(me)  # read last: the /proc scans above cost this process CPU
            now = time.perf_counter()
            window = Window(now, now + spec["seconds"])
            base = 10_000_000 * count
            loops = [_loop(c, tool, base + 1_000_000 * i, window) for i, c in enumerate(clients[:count])]
            await asyncio.gather(*loops)
            cpu_self = cpu_seconds(me) - cpu_self  # read first, for the same reason
            cpu_server_end, cpu_relays_end = _trees_cpu(server_pid, me)
            results.append(
                {
                    "clients": count,
                    "seconds": window.last - window.start,
                    "latencies": window.latencies,
                    "cpu_server": sum(_minus(cpu_server_end, cpu_server).values()) if server_pid else None,
                    "cpu_server_by_name": _minus(cpu_server_end, cpu_server),
                    "cpu_relays": cpu_relays_end - cpu_relays,
                    "cpu_load": cpu_self,
                }
            )
        return {"results": results}
    finally:
        await asyncio.gather(*(client.stop() for client in clients), return_exceptions=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    # To a file, not stdout: once, with the stdio sessions running, the result came through the pipe cut
    # at 128 KiB.
    Path(spec["out"]).write_text(json.dumps(runner(run(spec))))


if __name__ == "__main__":
    main()
