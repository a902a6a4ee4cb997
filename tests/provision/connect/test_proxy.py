"""The stdio proxy (``mcpctl connect``) against a real OpenSSH sshd, real servers and a real MCP client.

Two kinds of server run behind the proxy:

- the real ``mcp_sales`` of this checkout: the profile's ``remote_dir`` is the repository root (the sshd
  fixture logs into this same machine), whose ``.venv`` already runs it, so nothing is bootstrapped;
- a stand-in JSON-RPC server (stdlib only, written to a temporary directory) whose behaviour a test
  picks: echo, ask the client something, hold a request forever, print junk, ignore stdin EOF. It logs
  every line it receives, so a test can see what the server side saw.

Every server gets a unique marker argument, so a test finds its processes in /proc (same machine). A
test that needs a new server waits for a marked process with a new pid to appear: that is the moment
the proxy has noticed the drop, so what the client sends next goes to the new server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from mcp import Client, StdioServerParameters

from provision.connect import jsonrpc
from provision.connect.jsonrpc import Kind, Ledger, LineSplitter, parse
from provision.connect.proxy import GIVE_UP_ENV, Proxy, ProxySettings, _LocalPeer, proxy_logging
from provision.errors import ProfileError
from provision.profiles import Profile, known_hosts_path, load_profile, log_dir, save_profile
from provision.ssh import sandbox
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.sandbox import SandboxInfo

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


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in server script."""
    path = tmp_path_factory.mktemp("standin") / "standin.py"
    path.write_text(STANDIN)
    return path


def _marker() -> str:
    return f"mcpctl-test-{uuid.uuid4().hex}"


def _standin_command(
    script: Path,
    marker: str,
    *,
    log: Path | None = None,
    flags: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    argv = [python, str(script), "--marker", marker, *flags]
    return [*argv, "--log", str(log)] if log is not None else argv


def _marked_pids(marker: str) -> list[int]:
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


def _descendants(root: int) -> list[int]:
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


async def _poll(check: Callable[[], T], what: str) -> T:
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


async def _new_server(marker: str, old: int | None = None) -> int:
    """Wait for the one live server process with ``marker`` whose pid is not ``old``; return its pid."""
    pids = await _poll(lambda: [p for p in _marked_pids(marker) if p != old], f"a server for {marker}")
    assert len(pids) == 1, pids
    return pids[0]


def _valid_shape(message: Any) -> bool:
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
        assert _valid_shape(message), line
        self.seen.append(message)
        return dict(message)

    async def response(self, request_id: Any) -> dict[str, Any]:
        """Receive until the response to ``request_id`` (other messages stay in ``seen``)."""
        while True:
            message = await self.recv()
            if "method" not in message and message.get("id") == request_id:
                return message

    async def handshake(self) -> None:
        self.send({"id": "init", "method": "initialize", "params": _initialize_params()})
        assert "result" in await self.response("init")
        self.send({"method": "notifications/initialized"})


def _initialize_params(version: str = "2025-11-25") -> dict[str, Any]:
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
            yield Running(RawClient(reader, lambda data: _write_all(to_proxy_w, data)), close_stdin, finished)
        finally:
            close_stdin()
            await finished()
            transport.close()


def _write_all(fd: int, data: bytes) -> None:
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


def _raw(process: asyncio.subprocess.Process) -> RawClient:
    assert process.stdin is not None and process.stdout is not None
    return RawClient(process.stdout, process.stdin.write)


def _save_profile(
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


def _fast(give_up_after: float = BOUND) -> ProxySettings:
    return ProxySettings(give_up_after=give_up_after, backoff_initial=0.05, backoff_max=0.5)


def _received(log: Path, pid: int) -> list[dict[str, Any]]:
    """What stand-in process ``pid`` received, from its own log."""
    prefix = f"{pid} "
    return [
        json.loads(line[len(prefix) :]) for line in log.read_text().splitlines() if line.startswith(prefix)
    ]


# ---------------------------------------------------------------------------------- pure: framing


@pytest.mark.parametrize(
    ("line", "kinds"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', [Kind.REQUEST]),
        (b'{"jsonrpc":"2.0","id":"a","method":"x","params":{}}', [Kind.REQUEST]),
        (b'{"jsonrpc":"2.0","method":"notifications/initialized"}', [Kind.NOTIFICATION]),
        (b'{"jsonrpc":"2.0","id":1,"result":{}}', [Kind.RESPONSE]),
        (b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}', [Kind.RESPONSE]),
        (
            b'[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","method":"n"}]',
            [Kind.RESPONSE, Kind.NOTIFICATION],
        ),
        (b"not json", None),
        (b"", None),
        (b"[]", None),
        (b'{"jsonrpc":"2.0","note":"no message"}', None),
        (b'{"jsonrpc":"1.0","id":1,"result":{}}', None),
        (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"both"}}', None),
        (b'{"jsonrpc":"2.0","id":true,"method":"x"}', None),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', None),
        (b'{"jsonrpc":"2.0","id":1,"error":"not an object"}', None),
        (b'[{"jsonrpc":"2.0","id":1,"result":{}}, "junk"]', None),
        (b"\xff\xfe", None),
        (b'"a string"', None),
    ],
)
def test_parse_accepts_only_jsonrpc_messages(line: bytes, kinds: list[Kind] | None) -> None:
    message = parse(line)
    if kinds is None:
        assert message is None
    else:
        assert message is not None
        assert [part.kind for part in message.parts] == kinds
        assert message.raw == line


def test_line_splitter_cuts_lines_bounds_them_and_keeps_the_unfinished_rest() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\r\nde\nf") == [b"abc", b"de"]
    assert splitter.feed(b"0123456789ABC") == []  # too long: skipped up to its newline
    assert splitter.feed(b"DEF\nok\n") == [b"ok"]
    assert splitter.overflowed == 1
    assert splitter.feed(b"tail") == []
    assert splitter.rest() == b"tail"
    assert splitter.rest() == b""


def _message(data: dict[str, Any]) -> jsonrpc.Message:
    message = parse(json.dumps({"jsonrpc": "2.0", **data}).encode())
    assert message is not None
    return message


def _decoded(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_ledger_fails_in_flight_requests_resends_the_handshake_and_replays_the_session() -> None:
    ledger = Ledger(queue_limit=8, id_prefix="own-", dropped_message="dropped")
    assert ledger.to_server(_message({"id": 1, "method": "initialize", "params": {"protocolVersion": "v"}}))
    # The link drops before initialize is answered: it is queued again, not failed.
    assert ledger.link_lost() == []
    assert ledger.replay() == []
    resent = ledger.dequeue()
    assert resent is not None and resent.parts[0].method == "initialize"
    ledger.to_server(resent)
    out, own = ledger.from_server(_message({"id": 1, "result": {"protocolVersion": "v"}}))
    assert out is not None and own == []
    assert ledger.handshake_done and ledger.protocol_version == "v"
    ledger.to_server(_message({"method": "notifications/initialized"}))
    ledger.to_server(_message({"id": 2, "method": "logging/setLevel", "params": {"level": "debug"}}))
    ledger.from_server(_message({"id": 2, "result": {}}))
    ledger.to_server(_message({"id": 3, "method": "tools/call", "params": {"name": "slow"}}))
    ledger.from_server(_message({"id": "s1", "method": "roots/list"}))

    told = _decoded(ledger.link_lost())
    assert told[0] == {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": jsonrpc.LINK_DROPPED, "message": "dropped"},
    }
    assert told[1]["method"] == "notifications/cancelled" and told[1]["params"]["requestId"] == "s1"
    assert len(told) == 2

    steps = ledger.replay()
    sent = [json.loads(line) for line, _ in steps]
    assert [m.get("method") for m in sent] == ["initialize", "notifications/initialized", "logging/setLevel"]
    assert sent[0]["params"] == {"protocolVersion": "v"} and sent[0]["id"].startswith("own-")
    assert steps[0][1] == sent[0]["id"] and steps[1][1] is None
    # The proxy's own answers are taken out of what the client sees.
    out, own = ledger.from_server(_message({"id": sent[0]["id"], "result": {}}))
    assert out is None and [part.id for part in own] == [sent[0]["id"]]


def test_ledger_filters_late_answers_and_queued_cancellations() -> None:
    ledger = Ledger(queue_limit=2, id_prefix="own-", dropped_message="dropped")
    ledger.from_server(_message({"id": 7, "method": "sampling/createMessage"}))
    ledger.link_lost()
    # The client's answer to the server that is gone must not reach its successor.
    assert ledger.admit(_message({"id": 7, "result": {}})) is None
    # Nor an answer to a request no server sent.
    assert ledger.admit(_message({"id": 8, "result": {}})) is None
    assert ledger.enqueue(_message({"id": 1, "method": "tools/call"})) == []
    assert ledger.enqueue(_message({"id": 2, "method": "tools/list"})) == []
    full = _decoded(ledger.enqueue(_message({"id": 3, "method": "tools/list"})))
    assert full[0]["id"] == 3 and full[0]["error"]["code"] == jsonrpc.QUEUE_FULL
    # Cancelling a request that still waits removes both.
    cancel = _message({"method": "notifications/cancelled", "params": {"requestId": 1}})
    assert ledger.admit(cancel) is None
    assert ledger.queued == 1
    gave_up = _decoded(ledger.abandon("gone"))
    assert [m["id"] for m in gave_up] == [2] and gave_up[0]["error"]["code"] == jsonrpc.GAVE_UP
    # A cancellation for a request already answered by us is not sent to the new server.
    assert (
        ledger.to_server(_message({"method": "notifications/cancelled", "params": {"requestId": 3}})) is None
    )


def test_settings_read_the_give_up_time_from_the_environment() -> None:
    assert ProxySettings.from_env({}).give_up_after == ProxySettings().give_up_after
    assert ProxySettings.from_env({GIVE_UP_ENV: "7.5"}).give_up_after == 7.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ProfileError, match=GIVE_UP_ENV):
            ProxySettings.from_env({GIVE_UP_ENV: bad})
    settings = ProxySettings(backoff_initial=0.2, backoff_max=5.0)
    assert 0.1 <= settings.backoff(0) <= 0.2
    assert 2.5 <= settings.backoff(40) <= 5.0


@pytest.fixture
def regular_files(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """A regular file with three lines as stdin and an empty one as stdout (not pipes)."""
    (tmp_path / "in").write_bytes(b'{"n":1}\n' * 3)
    with (tmp_path / "in").open("rb") as stdin, (tmp_path / "out").open("wb") as stdout:
        yield stdin.fileno(), stdout.fileno(), tmp_path / "out"


@pytest.mark.anyio
async def test_the_local_side_also_works_on_descriptors_asyncio_cannot_watch(
    regular_files: tuple[int, int, Path],
) -> None:
    # Regular files (and Windows pipes) are read by a thread and written with blocking writes.
    stdin, stdout, written = regular_files
    peer = _LocalPeer(stdin, stdout)
    await peer.open()
    data = b""
    with anyio.fail_after(BOUND):
        while chunk := await peer.read():
            data += chunk
    await peer.write(b"a line")
    peer.close()
    assert data == b'{"n":1}\n' * 3
    assert written.read_bytes() == b"a line\n"


# ------------------------------------------------------------------------- real client, real server


def _mcpctl_connect(name: str) -> list[str]:
    """What an MCP client's config runs: the installed `mcpctl connect NAME` if present."""
    script = Path(sys.executable).parent / "mcpctl"
    if script.exists():
        return [str(script), "connect", name]
    return [sys.executable, "-m", "provision.connect.proxy", name]


@pytest.mark.anyio
async def test_claude_style_session_survives_dropped_links_and_a_dead_server(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    marker = str(tmp_path / _marker())  # a unique --cache-dir: finds the server in /proc
    _save_profile(sshd, "e2e", server_args=["--cache-dir", marker])
    command = _mcpctl_connect("e2e")
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={"MCPCTL_HOME": str(mcpctl_home)}
    )
    with anyio.fail_after(BOUND * 3):
        async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
            assert client.protocol_version == "2025-11-25"  # the handshake era, as Claude Desktop speaks
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"top_n_products", "list_operations"} <= tools
            operations = await client.call_tool("list_operations", {})
            assert not operations.is_error
            city = operations.structured_content["operations"][0]["name"]
            top = await client.call_tool("top_n_products", {"n": 3, "operation": city})
            assert not top.is_error and len(top.structured_content["products"]) == 3

            first = await _new_server(marker)
            assert sshd.kill_session_processes() > 0  # every SSH session dies, the listener stays
            second = await _new_server(marker, old=first)
            again = await client.call_tool("top_n_products", {"n": 2, "operation": city})
            assert not again.is_error and len(again.structured_content["products"]) == 2

            os.kill(second, signal.SIGKILL)  # the server dies, the SSH connection lives
            await _new_server(marker, old=second)
            listed = await client.call_tool("list_operations", {})
            assert not listed.is_error and listed.structured_content == operations.structured_content
    # The client closed the proxy's stdin: the proxy closed the server's, and the server is gone.
    await _poll(lambda: not _marked_pids(marker), "the server to exit")
    text = (log_dir() / "e2e.log").read_text()
    assert text.count("replaying the client's initialize") == 2
    assert "link #3: server started" in text


@pytest.mark.anyio
async def test_modern_client_passes_through_survives_a_drop_and_sigterm_ends_it(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    marker = str(tmp_path / _marker())
    _save_profile(sshd, "modern", server_args=["--cache-dir", marker])
    argv = [sys.executable, "-m", "provision.connect.proxy", "modern"]
    async with subprocess_proxy(argv, tmp_path / "stderr") as process:
        client = _raw(process)
        client.send({"id": 1, "method": "server/discover", "params": {"_meta": MODERN_META}})
        discovered = await client.response(1)
        assert "2026-07-28" in discovered["result"]["supportedVersions"]
        call = {"name": "list_operations", "arguments": {}, "_meta": MODERN_META}
        client.send({"id": 2, "method": "tools/call", "params": call})
        before = await client.response(2)
        assert before["result"]["isError"] is False

        first = await _new_server(marker)
        sshd.kill_session_processes()
        await _new_server(marker, old=first)
        client.send({"id": 3, "method": "tools/call", "params": call})
        after = await client.response(3)
        assert after["result"]["structuredContent"] == before["result"]["structuredContent"]

        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(BOUND):
            assert await process.wait() == 0
    await _poll(lambda: not _marked_pids(marker), "the server to exit")
    text = (log_dir() / "modern.log").read_text()
    assert "received SIGTERM" in text
    assert "replaying" not in text  # the 2026-07-28 revision has no session to replay


# --------------------------------------------------------------------------- stand-in server, in process


@pytest.mark.anyio
async def test_handshake_is_replayed_to_a_new_server_and_the_client_sees_one_answer(
    sshd: Any, standin: Path, tmp_path: Path
) -> None:
    marker, received = _marker(), tmp_path / "received.log"
    proxy = Proxy("replay", sshd.target(), _standin_command(standin, marker, log=received), settings=_fast())
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        client.send({"id": 1, "method": "initialize", "params": _initialize_params()})
        assert (await client.response(1))["result"]["serverInfo"]["name"] == "stand-in"
        client.send({"method": "notifications/initialized"})
        client.send({"id": 2, "method": "logging/setLevel", "params": {"level": "debug"}})
        await client.response(2)
        client.send({"id": 3, "method": "echo"})
        first = (await client.response(3))["result"]["pid"]

        sshd.kill_session_processes()
        second = await _new_server(marker, old=first)
        client.send({"id": 4, "method": "echo"})
        assert (await client.response(4))["result"]["pid"] == second  # not "not initialized"

        seen = _received(received, second)
        assert [m.get("method") for m in seen] == [
            "initialize",
            "notifications/initialized",
            "logging/setLevel",
            "echo",
        ]
        assert seen[0]["params"] == _initialize_params()
        assert str(seen[0]["id"]).startswith("mcpctl-proxy-")
        assert _received(received, first)[0]["method"] == "initialize"
        running.close_stdin()
        assert await running.exit_code() == 0
    # One answer per client request, none to the proxy's own.
    assert [m["id"] for m in client.seen] == [1, 2, 3, 4]


@pytest.mark.anyio
async def test_in_flight_requests_get_an_error_and_server_requests_pass_both_ways(
    sshd: Any, standin: Path, tmp_path: Path
) -> None:
    marker, received = _marker(), tmp_path / "received.log"
    proxy = Proxy(
        "inflight", sshd.target(), _standin_command(standin, marker, log=received), settings=_fast()
    )
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        await client.handshake()
        # A server-to-client request and its answer, through the proxy both ways, ids untouched.
        client.send({"id": 2, "method": "ask"})
        asked = await client.recv()
        assert asked == {"jsonrpc": "2.0", "id": "s-2", "method": "roots/list"}
        client.send({"id": "s-2", "result": {"roots": []}})
        assert (await client.response(2))["result"] == {"answer": {"roots": []}}

        client.send({"id": 3, "method": "ask"})  # left unanswered when the link drops
        assert (await client.recv())["id"] == "s-3"
        client.send({"id": 4, "method": "hold"})
        holding = await client.recv()
        assert holding["method"] == "test/holding"
        first = await _new_server(marker)

        sshd.kill_session_processes()
        told = [await client.recv() for _ in range(3)]
        errors = {m["id"]: m["error"] for m in told if "error" in m}
        assert set(errors) == {3, 4}
        assert errors[4]["code"] == jsonrpc.LINK_DROPPED and "retry" in errors[4]["message"]
        cancelled = [m for m in told if m.get("method") == "notifications/cancelled"]
        assert [m["params"]["requestId"] for m in cancelled] == ["s-3"]

        second = await _new_server(marker, old=first)
        client.send({"id": "s-3", "result": {"roots": []}})  # late: its server is gone
        client.send({"id": 5, "method": "echo"})
        assert (await client.response(5))["result"]["pid"] == second
        assert all(m.get("id") != "s-3" for m in _received(received, second))
    assert "2 request(s) in flight answered with an error" in (tmp_path / "proxy.log").read_text()


@pytest.mark.anyio
async def test_a_half_dead_link_is_noticed_by_the_keepalive(sshd: Any, standin: Path, tmp_path: Path) -> None:
    marker = _marker()
    target = sshd.target(keepalive_interval=0.3)
    proxy = Proxy("halfdead", target, _standin_command(standin, marker), settings=_fast())
    frozen: list[int] = []
    try:
        async with in_process(proxy, tmp_path / "proxy.log") as running:
            client = running.client
            await client.handshake()
            client.send({"id": 2, "method": "echo"})
            first = (await client.response(2))["result"]["pid"]
            # Freeze the session: the TCP connection stays up but nothing answers, as behind a dead NAT.
            frozen = _descendants(sshd.process.pid)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            client.send({"id": 3, "method": "echo"})
            assert (await client.response(3))["error"]["code"] == jsonrpc.LINK_DROPPED
            await _new_server(marker, old=first)
            client.send({"id": 4, "method": "echo"})
            assert (await client.response(4))["result"]["pid"] != first
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "SSH connection failed" in (tmp_path / "proxy.log").read_text()


@pytest.mark.anyio
async def test_only_jsonrpc_reaches_the_client_and_junk_goes_to_the_log(
    sshd: Any, standin: Path, tmp_path: Path
) -> None:
    marker = _marker()
    proxy = Proxy(
        "junk", sshd.target(), _standin_command(standin, marker, flags=["--junk"]), settings=_fast()
    )
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        await client.handshake()
        for request_id in range(2, 5):
            client.send({"id": request_id, "method": "echo"})
            assert "result" in await client.response(request_id)
        running.close_stdin()
        assert await running.exit_code() == 0
        with anyio.fail_after(BOUND):
            assert await client.reader.read() == b""  # nothing after the last message either
    assert [m["id"] for m in client.seen] == ["init", 2, 3, 4]  # recv() checked each one's shape
    text = (tmp_path / "proxy.log").read_text()
    for junk in (
        "Welcome to the stand-in",
        "junk: a banner line",
        "{not json",
        "junk: JSON, but no message",
        "[]",
    ):
        assert junk in text
    assert "unfinished line from the server: 'junk: an unfinished last line'" in text


@pytest.fixture
def shared_standin() -> Iterator[Path]:
    """The stand-in script in a directory every account can read (for the noisy account)."""
    shared = Path(tempfile.mkdtemp(prefix="mcpctl-proxy-test-"))
    shared.chmod(0o755)
    script = shared / "standin.py"
    script.write_text(STANDIN)
    script.chmod(0o644)
    yield script
    script.unlink()
    shared.rmdir()


@pytest.mark.anyio
async def test_rc_file_noise_of_the_login_account_does_not_reach_the_client(
    sshd: Any, shared_standin: Path, tmp_path: Path
) -> None:
    target = sshd.noisy_target()  # skips unless root
    command = _standin_command(shared_standin, _marker(), python="/usr/bin/python3")
    async with in_process(
        Proxy("noisy", target, command, settings=_fast()), tmp_path / "proxy.log"
    ) as running:
        await running.client.handshake()
        running.client.send({"id": 2, "method": "echo"})
        assert "result" in await running.client.response(2)
    assert all(sshd.noise not in json.dumps(m) for m in running.client.seen)
    assert f"{sshd.noise}: on stderr" in (tmp_path / "proxy.log").read_text()  # stderr is logged


@pytest.mark.anyio
async def test_a_server_that_cannot_start_fails_requests_fast_instead_of_hanging(
    sshd: Any, tmp_path: Path
) -> None:
    proxy = Proxy(
        "broken", sshd.target(), ["/nonexistent/.venv/bin/python", "-m", "mcp_sales"], settings=_fast()
    )
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        running.client.send({"id": 1, "method": "initialize", "params": _initialize_params()})
        answer = await running.client.response(1)
        assert answer["error"]["code"] == jsonrpc.GAVE_UP
        assert "exit status 127" in answer["error"]["message"]
        assert "mcpctl doctor broken" in answer["error"]["message"]
        assert await running.exit_code() == 5  # RemoteError
    assert "gave up on the server of 'broken'" in (tmp_path / "proxy.log").read_text()


# ---------------------------------------------------------------------------- the entry point, as a process


@pytest.mark.anyio
async def test_stdin_eof_exits_0_and_a_server_ignoring_eof_is_terminated(
    sshd: Any, standin: Path, mcpctl_home: Path, tmp_path: Path
) -> None:
    _save_profile(sshd, "linger")
    marker = _marker()
    # connect_main with a command of our choosing: the stand-in, which ignores stdin EOF.
    code = (
        "import sys, provision.connect.proxy as p; "
        "sys.exit(p.connect_main(sys.argv[1], command=sys.argv[2:]))"
    )
    argv = [sys.executable, "-c", code, "linger", *_standin_command(standin, marker, flags=["--linger"])]
    async with subprocess_proxy(argv, tmp_path / "stderr") as process:
        client = _raw(process)
        await client.handshake()
        client.send({"id": 2, "method": "echo"})
        assert "result" in await client.response(2)
        assert process.stdin is not None
        process.stdin.close()
        with anyio.fail_after(BOUND):
            assert await process.wait() == 0
    await _poll(lambda: not _marked_pids(marker), "the lingering server to be terminated")
    text = (log_dir() / "linger.log").read_text()
    assert "sending SIGTERM" in text
    assert "sending SIGTERM" in (tmp_path / "stderr").read_text()  # also on stderr, for the client's log


@pytest.mark.anyio
async def test_gives_up_on_a_host_that_refuses_and_answers_waiting_requests(
    sshd: Any, mcpctl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    _save_profile(sshd, "refused", port=closed_port)
    monkeypatch.setenv(GIVE_UP_ENV, "1.5")
    async with subprocess_proxy(
        [sys.executable, "-m", "provision.connect.proxy", "refused"], tmp_path / "stderr"
    ) as process:
        client = _raw(process)
        client.send({"id": 1, "method": "initialize", "params": _initialize_params()})
        answer = await client.response(1)
        assert answer["error"]["code"] == jsonrpc.GAVE_UP
        assert "connection refused" in answer["error"]["message"]
        with anyio.fail_after(BOUND):
            assert await process.wait() == 3  # ConnectError
    assert "gave up on the server of 'refused' after" in (log_dir() / "refused.log").read_text()


@pytest.mark.anyio
async def test_a_missing_profile_is_one_line_on_stderr_and_exit_2(mcpctl_home: Path, tmp_path: Path) -> None:
    async with subprocess_proxy(
        [sys.executable, "-m", "provision.connect.proxy", "nosuch"], tmp_path / "stderr"
    ) as process:
        assert process.stdout is not None
        with anyio.fail_after(BOUND):
            assert await process.wait() == 2
            assert await process.stdout.read() == b""
    assert "no profile named 'nosuch'" in (tmp_path / "stderr").read_text()


# -------------------------------------------------------------------------------- a restarted sandbox


def _sandbox_profile(info: SandboxInfo, name: str, marker: str) -> None:
    """A sandbox profile running this checkout's server (the sandbox is this machine), its key pinned."""
    save_profile(
        Profile(
            name=name,
            kind="sandbox",
            host=info.host,
            port=info.port,
            user=info.user,
            identity_file=info.client_key,
            remote_dir=str(REPO),
            data=[SAMPLE],
            server_args=["--cache-dir", marker],
            connect_timeout=5.0,  # an attempt that reaches the port's squatter gives up this soon
        )
    )
    pin_host_key(known_hosts_path(name), info.host, info.port, info.host_key_line)


@contextlib.contextmanager
def _squatted(port: int | None) -> Iterator[None]:
    """Listen on 127.0.0.1:``port`` (None: nothing) as another program would, so the sandbox cannot."""
    if port is None:
        yield
        return
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old port may be in TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        yield


@pytest.mark.anyio
@pytest.mark.parametrize("port_taken", [False, True], ids=["same-port", "port-taken"])
async def test_a_live_session_carries_on_when_the_sandbox_comes_back(
    mcpctl_home: Path, tmp_path: Path, port_taken: bool
) -> None:
    info = sandbox.up()
    marker = str(tmp_path / _marker())
    _sandbox_profile(info, "box", marker)
    command = _mcpctl_connect("box")
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={"MCPCTL_HOME": str(mcpctl_home)}
    )
    log = log_dir() / "box.log"
    try:
        with anyio.fail_after(BOUND * 3):
            async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
                before = {tool.name for tool in (await client.list_tools()).tools}
                assert "top_n_products" in before

                await anyio.to_thread.run_sync(sandbox.down)
                await _poll(
                    lambda: "link #1 lost" in log.read_text(), "the proxy to notice the sandbox is gone"
                )
                with _squatted(info.port if port_taken else None):
                    back = await anyio.to_thread.run_sync(sandbox.up)
                assert (back.port != info.port) is port_taken

                after = {tool.name for tool in (await client.list_tools()).tools}
                assert after == before
                listed = await client.call_tool("list_operations", {})
                assert not listed.is_error
        text = log.read_text()
        assert "replaying the client's initialize" in text
        assert (f"'box' moved from 127.0.0.1:{info.port} to 127.0.0.1:{back.port}" in text) is port_taken
        assert load_profile("box").port == back.port
        known = [line for line in known_hosts_path("box").read_text().splitlines() if line.strip()]
        assert known == [f"[127.0.0.1]:{back.port} {info.host_key_line}"]
    finally:
        sandbox.down()
    await _poll(lambda: not _marked_pids(marker), "the server to exit")


@pytest.mark.anyio
async def test_connect_starts_a_stopped_sandbox_elsewhere_when_its_port_is_taken(
    mcpctl_home: Path, tmp_path: Path
) -> None:
    info = sandbox.up()
    _sandbox_profile(info, "box", str(tmp_path / _marker()))
    sandbox.down()
    command = _mcpctl_connect("box")
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={"MCPCTL_HOME": str(mcpctl_home)}
    )
    try:
        with _squatted(info.port), anyio.fail_after(BOUND * 2):
            async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
                assert "top_n_products" in {tool.name for tool in (await client.list_tools()).tools}
        running = sandbox.status()
        assert running is not None and running.port != info.port
        assert load_profile("box").port == running.port
    finally:
        sandbox.down()
