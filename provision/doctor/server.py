"""The session phases: start what the client starts and speak MCP with it, as the client does.

spawn, initialize, tools/list and one cheap tool call run over one MCP SDK stdio client session
(which, like the apps, passes only a reduced environment). The time from spawn to the ``initialize``
answer is held against the 60 s Claude Desktop waits: over half of it is a warning, over all of it a
failure, each with a fix that names the slow part. A server that does not answer gets a fix from
what is known: a stale entry, a missing python on the host, a timeout, or what it printed.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import IO, TYPE_CHECKING, TextIO, cast

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, Implementation, TextContent

from provision import __version__
from provision.connect.jsonrpc import PROXY_ERRORS
from provision.doctor.context import Diagnosis, HardFailure, since
from provision.doctor.report import BUDGET_S, PHASES, WARN_FRACTION, Check, clip, innermost, message_of

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams

EXPECTED_TOOLS = ("top_n_products", "forecast_sales")
CHEAP_TOOLS = ("list_operations", "dataset_summary")  # read the data, compute next to nothing
_STDERR_LINES = 3
_MAX_TOOL_PAGES = 20


async def check_session(dx: Diagnosis) -> None:
    """spawn, initialize, tools/list and the tool call, over one client session."""
    assert dx.launch is not None
    launch = dx.launch
    params = StdioServerParameters(command=launch.command, args=list(launch.args), env=dict(launch.env))
    spawned: list[float] = []
    released: list[float] = []
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:

        @asynccontextmanager
        async def transport() -> AsyncIterator[TransportStreams]:
            # On Windows a TemporaryFile is a wrapper object, not a TextIO by type; it has a real fileno.
            async with stdio_client(params, errlog=cast(TextIO, errlog)) as streams:
                spawned.append(time.perf_counter())  # the process runs: the client's clock starts
                try:
                    yield streams
                finally:
                    # The client let go (a failed answer); what follows is the process's shutdown.
                    released.append(time.perf_counter())

        client = Client(
            transport(),
            mode="legacy",  # the initialize handshake, as Claude Desktop speaks it
            read_timeout_seconds=dx.timeout,
            client_info=Implementation(name="mcpctl-doctor", version=__version__),
        )
        started = time.perf_counter()
        # Each request is bounded by read_timeout_seconds; this bounds the whole, shutdown included.
        # Failures inside are only recorded: an exception would cross the SDK's task groups.
        with anyio.move_on_after(dx.timeout * 4):
            async with contextlib.AsyncExitStack() as stack:
                try:
                    await stack.enter_async_context(client)
                except Exception as exc:
                    _start_failed(dx, exc, started, spawned, released, errlog)
                else:
                    if _started(dx, started, spawned[0], time.perf_counter(), client):
                        names = await _list_tools(dx, client)
                        if names is not None:
                            await _call_tool(dx, client, names)
    session_end = PHASES.index("tool call") + 1  # the phases this session runs end there
    if len(dx.checks) < session_end and dx.checks[-1].ok:
        dx.fail(
            PHASES[len(dx.checks)],
            started,
            f"no end after {dx.timeout * 4:g} s",
            f"`mcpctl logs {dx.name}` shows what the server was doing.",
        )
    if len(dx.checks) < session_end:
        raise HardFailure(dx.checks[-1].phase)


# ---------------------------------------------------------------------------------- spawn, initialize


def _spawn_detail(dx: Diagnosis) -> str:
    assert dx.launch is not None
    return f"started `{dx.launch.describe()}` ({dx.launch.origin})"


def _start_failed(
    dx: Diagnosis,
    error: Exception,
    started: float,
    spawned: Sequence[float],
    released: Sequence[float],
    errlog: IO[str],
) -> None:
    assert dx.launch is not None
    exc, message = innermost(error), message_of(error)
    if not spawned:
        fix = f"rewrite the entry with {dx.config_command}."
        if isinstance(exc, PermissionError):
            fix = f"run `chmod +x {dx.launch.command}`, or {fix}"
        dx.flag("spawn", started, f"cannot start `{dx.launch.describe()}`: {message}", fix)
        return
    dx.add(Check("spawn", True, spawned[0] - started, _spawn_detail(dx)))
    ended = released[0] if released else time.perf_counter()
    stderr = stderr_tail(errlog)
    detail = f"no answer to initialize: {clip(message)}"
    if stderr and not is_answer(exc):
        detail += f"; it printed: {stderr}"  # it just ended: its last words say why
    fix = start_fix(dx, exc, f"{message} {stderr}", stderr, ended - spawned[0])
    dx.flag("initialize", spawned[0], detail, fix, until=ended)


def stderr_tail(errlog: IO[str]) -> str:
    """The last lines the process wrote to stderr, on one line."""
    errlog.flush()
    errlog.seek(0)
    lines = [line.strip() for line in errlog.read().splitlines() if line.strip()]
    return clip(" | ".join(lines[-_STDERR_LINES:]))


def is_answer(exc: BaseException) -> bool:
    """Whether ``exc`` is an error the other side sent (its message is the explanation).

    The proxy's own errors (giving up, a dropped link) are answers: their codes are kept apart from
    the MCP SDK's connection-closed and timeout verdicts, which are the client's own.
    """
    if not isinstance(exc, MCPError):
        return False
    return exc.code in PROXY_ERRORS or exc.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT)


def start_fix(dx: Diagnosis, exc: BaseException, output: str, stderr: str, waited: float) -> str:
    """What to do when the server gave no answer to ``initialize``.

    Args:
        exc: What the MCP client raised.
        output: Everything the command said: its error answer (the proxy's, with the host's output)
            and its stderr.
        stderr: Its stderr alone.
        waited: Seconds from the start to the client letting go.
    """
    assert dx.launch is not None
    if dx.stale_entry_fix is not None:
        return dx.stale_entry_fix  # the entry knocks at a port the host left: nothing else matters
    # The host's shell says so when the python is gone (connect may not have been able to look).
    if dx.python_present is False or (
        dx.python is not None and dx.python in output and ("not found" in output or "No such file" in output)
    ):
        return (
            f"the server's python {dx.python or ''} is missing on the host: install the server's "
            f"environment with `mcpctl provision {dx.name}`."
        )
    if isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT:
        return slow_fix(dx, waited, gave_up=True)
    # `mcpctl connect` prints its error on stderr and exits before speaking: a profile it cannot find
    # (the doctor found it) means the entry's environment points it elsewhere.
    if "no profile named" in stderr:
        return (
            "the entry's environment (MCPCTL_HOME, XDG_*) points mcpctl at another profile directory: "
            f"rewrite the entry with {dx.config_command}."
        )
    if dx.launch.style == "proxy":
        return (
            f"the server stopped before answering: `mcpctl logs {dx.name}` shows its error output; "
            f"`mcpctl provision {dx.name}` reinstalls it."
        )
    return (
        "the server stopped before answering (its error output is above); "
        f"`mcpctl provision {dx.name}` reinstalls it."
    )


def slow_fix(dx: Diagnosis, start_s: float, spawn_s: float = 0.0, *, gave_up: bool = False) -> str:
    """Name the part of the start that eats the budget, and what helps with it.

    The SSH connection is assumed to take as long as the connect phase's own; the rest of the wait
    is the server's start (with the local command's own start, which is short).
    """
    assert dx.target is not None
    connect = min(dx.connect_s or 0.0, start_s)
    parts = {
        "local start of the command": spawn_s,
        "SSH connection": connect,
        "server's start on the host": max(start_s - connect, 0.0),
    }
    advice = {
        "local start of the command": "check what delays starting programs here (antivirus, a slow disk)",
        "SSH connection": f"check the network path to {dx.target.address} (VPN, DNS, a distant region)",
        "server's start on the host": (
            "check the host's load and disk (a cold or small instance) and what the server does "
            f"meanwhile in `mcpctl logs {dx.name}`"
        ),
    }
    slowest = max(parts, key=lambda part: parts[part])
    took = f"{'over ' if gave_up else ''}{parts[slowest]:.1f} s"
    return f"the {slowest} takes {took} of the {BUDGET_S:.0f} s {dx.app} waits: {advice[slowest]}."


def _started(dx: Diagnosis, started: float, spawned: float, answered: float, client: Client) -> bool:
    """Record spawn and initialize of a server that answered; False when it took over the budget."""
    dx.add(Check("spawn", True, spawned - started, _spawn_detail(dx)))
    init_s, total = answered - spawned, answered - started
    info = client.server_info
    server = f"{info.name} {info.version}" if info is not None else "the server"
    detail = (
        f"{server} answered (protocol {client.protocol_version}) {init_s:.2f} s after the start: "
        f"{total:.1f} s of the {BUDGET_S:.0f} s budget"
    )
    fix = slow_fix(dx, init_s, spawned - started)
    if total > BUDGET_S:
        dx.flag("initialize", spawned, detail, fix)
        return False
    if total > BUDGET_S * WARN_FRACTION:
        dx.add(Check("initialize", True, init_s, detail, fix, warning=True))
    else:
        dx.add(Check("initialize", True, init_s, detail))
    return True


# -------------------------------------------------------------------------------- tools/list, call


async def _list_tools(dx: Diagnosis, client: Client) -> list[str] | None:
    """The tool names, or None when no tool can be called."""
    started = time.perf_counter()
    names: list[str] = []
    try:
        cursor: str | None = None
        for _page in range(_MAX_TOOL_PAGES):
            result = await client.list_tools(cursor=cursor)
            names += [tool.name for tool in result.tools]
            cursor = result.next_cursor
            if not cursor:
                break
    except Exception as exc:
        dx.flag(
            "tools/list",
            started,
            f"tools/list failed: {clip(message_of(exc))}",
            f"`mcpctl logs {dx.name}` shows what the server reported.",
        )
        return None
    missing = [tool for tool in EXPECTED_TOOLS if tool not in names]
    detail = f"{len(names)} tools: {', '.join(names) or 'none'}"
    if missing:
        dx.flag(
            "tools/list",
            started,
            f"{detail}; {', '.join(missing)} missing",
            f"the host runs an old or different server: update it with `mcpctl sync {dx.name}`.",
        )
    else:
        dx.add(Check("tools/list", True, since(started), detail))
    return names if any(tool in names for tool in CHEAP_TOOLS) else None


async def _call_tool(dx: Diagnosis, client: Client, names: Sequence[str]) -> None:
    started = time.perf_counter()
    tool = next(t for t in CHEAP_TOOLS if t in names)
    try:
        result = await client.call_tool(tool, {})
    except Exception as exc:
        dx.flag(
            "tool call",
            started,
            f"{tool} failed: {clip(message_of(exc))}",
            f"`mcpctl logs {dx.name}` shows what the server reported.",
        )
        return
    text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
    if result.is_error:
        dx.flag("tool call", started, f"{tool} answered with a tool error", clip(text) or "(no message)")
        return
    dx.add(Check("tool call", True, since(started), f"{tool}: {clip(text, 120)}"))


__all__ = [
    "CHEAP_TOOLS",
    "EXPECTED_TOOLS",
    "check_session",
    "is_answer",
    "slow_fix",
    "start_fix",
    "stderr_tail",
]
