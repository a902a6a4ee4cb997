"""What the proxy tests share: a stand-in server, a raw JSON-RPC client, ways to run the proxy.

Two kinds of server run behind the proxy:

- the real ``mcp_sales`` of this checkout: the profile's ``remote_dir`` is the repository root (the sshd
  fixture logs into this same machine), whose ``.venv`` already runs it, so nothing is bootstrapped;
- a stand-in JSON-RPC server (stdlib only, written to a temporary directory) whose behaviour a test
  picks: echo, ask the client something, hold a request forever (``hold`` blocks it, ``tools/call`` of a
  ``*_hold`` tool just leaves it unanswered), list tools, print junk, ignore stdin EOF. It logs
  every line it receives, so a test can see what the server side saw.

Every server gets a unique marker argument, so a test finds its processes in /proc (same machine). A
test that needs a new server waits for a marked process with a new pid to appear: that is the moment
the proxy has noticed the drop, so what the client sends next goes to the new server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from provision.connect.main import proxy_logging
from provision.connect.proxy import Proxy
from provision.connect.settings import ProxySettings
from provision.profiles import Profile, known_hosts_path, save_profile
from provision.ssh.hostkeys import pin_host_key

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample_sales_data.csv"
BOUND = 60.0  # seconds: an upper bound on any single wait, never an expectation
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test-client", "version": "0"},
}
T = TypeVar("T")

STANDIN = r'''
"""A stand-in MCP server for the proxy tests: stdlib only, behaviour chosen by flags."""
import json
import os
import sys
import time

# Two tools that never answer: one the server vouches for (read-only and idempotent), one it does not.
TOOLS = [
    {"name": "safe_hold", "inputSchema": {"type": "object"},
     "annotations": {"readOnlyHint": True, "idempotentHint": True}},
    {"name": "write_hold", "inputSchema": {"type": "object"},
     "annotations": {"readOnlyHint": False, "idempotentHint": True}},
]
args = sys.argv[1:]
log = open(args[args.index("--log") + 1], "a", buffering=1) if "--log" in args else None
junk = "--junk" in args
out = sys.stdout


def send(message):
    if junk:  # what a careless server or library prints between messages
        out.write("junk: a banner line\n{not json\n")
        out.write(json.dumps({"jsonrpc": "2.0", "note": "junk: JSON, but no message"}) + "\n[]\n\n")
    out.write(json.dumps(message) + "\n")
    out.flush()


if junk:
    out.write("junk: Welcome to the stand-in server!\n")
    out.flush()
print("stand-in: started", file=sys.stderr, flush=True)
initialized = False
asks = {}
while True:
    line = sys.stdin.readline()
    if not line:
        break
    if log:
        log.write(f"{os.getpid()} {line.strip()}\n")
    message = json.loads(line)
    method, mid = message.get("method"), message.get("id")
    if method is None:  # the client's answer to one of our requests
        if mid in asks:
            send({"jsonrpc": "2.0", "id": asks.pop(mid), "result": {"answer": message.get("result")}})
        continue
    if mid is None:
        continue
    params = message.get("params") or {}
    modern = "io.modelcontextprotocol/protocolVersion" in (params.get("_meta") or {})
    if method == "initialize":
        initialized = True
        result = {"protocolVersion": params.get("protocolVersion"), "capabilities": {},
                  "serverInfo": {"name": "stand-in", "version": "1"}}
        send({"jsonrpc": "2.0", "id": mid, "result": result})
    elif not (initialized or modern or method == "ping"):  # as real handshake-era servers do
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32600, "message": "not initialized"}})
    elif method == "hold":
        send({"jsonrpc": "2.0", "method": "test/holding", "params": {"id": mid}})
        time.sleep(3600)  # never answers: the test drops the link under this request
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "tools/call" and str(params.get("name")).endswith("_hold"):
        send({"jsonrpc": "2.0", "method": "test/holding", "params": {"id": mid, "pid": os.getpid()}})
    elif method == "ask":
        asks[f"s-{mid}"] = mid
        send({"jsonrpc": "2.0", "id": f"s-{mid}", "method": "roots/list"})
    else:
        send({"jsonrpc": "2.0", "id": mid, "result": {"echo": method, "params": params, "pid": os.getpid()}})
if junk:
    out.write("junk: an unfinished last line")
    out.flush()
if "--linger" in args:
    while True:
        time.sleep(3600)  # ignores stdin EOF: the proxy has to signal it
'''


# ------------------------------------------------------------------------------------------ helpers


def new_marker() -> str:
    return f"mcpctl-test-{uuid.uuid4().hex}"


def standin_command(
    script: Path,
    marker: str,
    *,
    log: Path | None = None,
    flags: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    argv = [python, str(script), "--marker", marker, *flags]
    return [*argv, "--log", str(log)] if log is not None else argv


def marked_pids(marker: str) -> list[int]:
    """Pids of live processes with ``marker`` as one of their arguments (zombies have no cmdline)."""
    wanted = marker.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in args:
            pids.append(int(entry.name))
    return pids


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def poll(check: Callable[[], T], what: str) -> T:
    """Wait (bounded) until ``check()`` is truthy.

    A remote process appearing or exiting signals nothing this test could wait on, so /proc is polled.
    """
    try:
        with anyio.fail_after(BOUND):
            while not (value := check()):  # noqa: ASYNC110 - polling /proc: there is no event to wait for
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"gave up waiting {BOUND:g} s for {what}") from None
    return value


async def new_server(marker: str, old: int | None = None) -> int:
    """Wait for the one live server process with ``marker`` whose pid is not ``old``; return its pid."""
    pids = await poll(lambda: [p for p in marked_pids(marker) if p != old], f"a server for {marker}")
    assert len(pids) == 1, pids
    return pids[0]


def valid_shape(message: Any) -> bool:
    """An independent check of the JSON-RPC 2.0 shape of what the client received."""
    items = message if isinstance(message, list) else [message]
    for item in items:
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
            return False
        if "method" not in item and ("id" not in item or ("result" in item) == ("error" in item)):
            return False
    return bool(items)


@dataclass
class RawClient:
    """Newline-delimited JSON-RPC over a proxy's stdin/stdout, as an MCP client speaks it."""

    reader: asyncio.StreamReader
    write: Callable[[bytes], None]
    seen: list[Any] = field(default_factory=list)

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    async def recv(self) -> dict[str, Any]:
        with anyio.fail_after(BOUND):
            line = await self.reader.readline()
        if not line:
            raise EOFError("the proxy closed its stdout")
        message = json.loads(line)
        assert valid_shape(message), line
        self.seen.append(message)
        return dict(message)

    async def response(self, request_id: Any) -> dict[str, Any]:
        """Receive until the response to ``request_id`` (other messages stay in ``seen``)."""
        while True:
            message = await self.recv()
            if "method" not in message and message.get("id") == request_id:
                return message

    async def handshake(self) -> None:
        self.send({"id": "init", "method": "initialize", "params": initialize_params()})
        assert "result" in await self.response("init")
        self.send({"method": "notifications/initialized"})


def initialize_params(version: str = "2025-11-25") -> dict[str, Any]:
    return {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "raw-test-client", "version": "0"},
    }


@dataclass
class Running:
    """A proxy being driven by a RawClient."""

    client: RawClient
    close_stdin: Callable[[], None]
    exit_code: Callable[[], Awaitable[int]]  # waits for the proxy to return its exit code


@asynccontextmanager
async def in_process(proxy: Proxy, log_path: Path) -> AsyncIterator[Running]:
    """Run ``proxy`` in this event loop on two pipes, with its log in ``log_path``."""
    to_proxy_r, to_proxy_w = os.pipe()
    from_proxy_r, from_proxy_w = os.pipe()
    loop = asyncio.get_running_loop()
    with proxy_logging(log_path, stderr=False):
        task = asyncio.ensure_future(proxy.run(to_proxy_r, from_proxy_w))
        reader = asyncio.StreamReader(limit=1 << 24)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_proxy_r, "rb", buffering=0)
        )
        client_end = [to_proxy_w]  # the client's write end, until it closes the proxy's stdin
        proxy_ends = [to_proxy_r, from_proxy_w]  # the descriptors the proxy was given

        def close_stdin() -> None:
            while client_end:
                os.close(client_end.pop())

        async def finished() -> int:
            """Wait for the proxy to return, then close its ends as its process exit would."""
            with anyio.fail_after(BOUND):
                await asyncio.wait({task})
            while proxy_ends:
                os.close(proxy_ends.pop())
            return task.result()

        try:
            yield Running(RawClient(reader, lambda data: write_all(to_proxy_w, data)), close_stdin, finished)
        finally:
            close_stdin()
            await finished()
            transport.close()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@asynccontextmanager
async def subprocess_proxy(
    argv: Sequence[str], stderr_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run the proxy as a separate process, as an MCP client does; killed at the end if still running."""
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr, limit=1 << 24
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.fail_after(BOUND):
                await process.wait()


def raw_client(process: asyncio.subprocess.Process) -> RawClient:
    assert process.stdin is not None and process.stdout is not None
    return RawClient(process.stdout, process.stdin.write)


def checkout_profile(
    sshd: Any, name: str, *, port: int | None = None, server_args: Sequence[str] = ()
) -> Profile:
    """A profile whose remote_dir is this checkout (its .venv runs mcp_sales), with the host key pinned."""
    profile = Profile(
        name=name,
        host=sshd.host,
        port=port or sshd.port,
        user=sshd.user,
        identity_file=sshd.client_key,
        remote_dir=str(REPO),
        data=[SAMPLE],
        server_args=list(server_args),
    )
    save_profile(profile)
    pin_host_key(known_hosts_path(name), sshd.host, port or sshd.port, sshd.host_key_line)
    return profile


def fast(give_up_after: float = BOUND) -> ProxySettings:
    return ProxySettings(give_up_after=give_up_after, backoff_initial=0.05, backoff_max=0.5)


def received_by(log: Path, pid: int) -> list[dict[str, Any]]:
    """What stand-in process ``pid`` received, from its own log."""
    prefix = f"{pid} "
    return [
        json.loads(line[len(prefix) :]) for line in log.read_text().splitlines() if line.startswith(prefix)
    ]


def mcpctl_connect(name: str) -> list[str]:
    """What an MCP client's config runs: the installed `mcpctl connect NAME` if present."""
    script = Path(sys.executable).parent / "mcpctl"
    if script.exists():
        return [str(script), "connect", name]
    return [sys.executable, "-m", "provision.connect", name]
