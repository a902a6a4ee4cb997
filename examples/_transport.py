"""How the examples reach the sales server: written once, shared by both clients.

Three ways, chosen on the command line (:func:`add_server_options`):

``--profile NAME``
    Run ``mcpctl connect NAME`` (the mcpctl installed beside this Python) as a stdio subprocess: the
    same command Claude Desktop runs, with its pinned host key, keepalive and reconnects.
``--profile NAME --ssh``
    Run the system OpenSSH client with the profile's plain-ssh entry (``mcpctl config claude NAME
    --style ssh`` writes the same one).
``--local [--data PATH]`` or ``--command "CMD ARGS"``
    Run the server on this computer (``python -m mcp_sales``), or any command that speaks MCP over
    stdio. No SSH needed: what tests and demos use.
``--url URL [--api-key KEY]``
    Reach a server already running over streamable HTTP (``mcp-sales serve --transport
    streamable-http``) with an API key or an OAuth access token (``$MCP_API_KEY`` by default),
    sent as ``Authorization: Bearer``.

The stdio ways become a :class:`ServerLaunch`, the HTTP one an :class:`HttpServer`;
:func:`open_client` connects to either with the MCP SDK's own client, using the initialize handshake
(as Claude Desktop does, and as ``mcpctl connect`` replays after a reconnect).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, Implementation, TextContent
from rich.console import Console
from rich.markup import escape

DEFAULT_CONNECT_TIMEOUT = 60.0  # seconds for the handshake: SSH login plus server start on a cold host
DEFAULT_CALL_TIMEOUT = 180.0  # seconds per tool call: a first forecast fits a model (up to a minute)
API_KEY_ENV = "MCP_API_KEY"  # the key the HTTP server accepts; read from here unless --api-key is given
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# What each refusal of the HTTP server means for the person running the example.
HTTP_REFUSALS = {
    401: "refused the credentials (401): pass the server's key with --api-key or $MCP_API_KEY,"
    " or a fresh OAuth access token",
    403: "accepted the token but it lacks a scope the server requires (403); ask the issuer for it",
    404: "has no MCP endpoint at this path (404); the server's endpoint is /mcp",
    413: "refused a request as too large (413)",
    503: "is busy or not ready (503): at its session limit, still preparing its data (see its /health)"
    " or unable to reach its OAuth issuer; try again shortly",
}


class TransportError(Exception):
    """The server cannot be launched or reached; ``str(err)`` is one line saying what to do."""


@dataclass(frozen=True)
class ServerLaunch:
    """A command that serves MCP on its stdin/stdout.

    Attributes:
        command: The executable (an absolute path where we can find one).
        args: Its arguments.
        env: Variables added to the small environment the SDK passes to servers; None for none.
        label: A short human description, used in messages ("mcpctl connect demo").
        hint: Where to look when the server closes the connection (added to that error's message).
    """

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    label: str = field(default="", compare=False)
    hint: str = field(default="", compare=False)

    def parameters(self) -> StdioServerParameters:
        """Return the SDK's launch parameters for this command."""
        return StdioServerParameters(
            command=self.command, args=list(self.args), env=dict(self.env) if self.env else None
        )

    def describe(self) -> str:
        """Return the label, or the command line when there is no label."""
        return self.label or shlex.join([self.command, *self.args])


@dataclass(frozen=True)
class HttpServer:
    """A sales server already running over streamable HTTP.

    Attributes:
        url: Its MCP endpoint, e.g. ``https://sales.example.com/mcp``.
        api_key: An API key or OAuth access token, sent as ``Authorization: Bearer``; None for a
            server run with ``--insecure-no-auth``. Kept out of ``repr`` so it never reaches a log.
    """

    url: str
    api_key: str | None = field(default=None, repr=False)
    hint: str = field(default="", compare=False)

    def describe(self) -> str:
        """Return the URL (the key is never part of it)."""
        return self.url

    def headers(self) -> dict[str, str]:
        """Return the request headers carrying the key, if there is one."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


Server = ServerLaunch | HttpServer


def http_server(url: str, api_key: str | None = None) -> HttpServer:
    """Check ``url`` and return the server to reach there; a bare ``http(s)://host:port`` gets ``/mcp``.

    Raises:
        TransportError: The URL is not http(s), or it would send a key in clear text over a network.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"--url {url!r} is not an http(s) URL; give e.g. https://sales.example.com/mcp")
    if parts.path in ("", "/"):
        url = f"{parts.scheme}://{parts.netloc}/mcp"
    key = (api_key or "").strip() or None
    if key and parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise TransportError(
            f"--url {url} is plain http to another host: the key would cross the network in clear text;"
            " use the https URL, or an SSH tunnel to a localhost URL"
        )
    return HttpServer(url.strip(), key)


def local_launch(data: Path | None = None, *, log_level: str = "WARNING") -> ServerLaunch:
    """Run ``python -m mcp_sales`` with this interpreter.

    Args:
        data: The sales file; None lets the server pick its default (``$MCP_SALES_DATA`` or the sample).
        log_level: The server's stderr log level; WARNING keeps the example's output readable.
    """
    args = ["-m", "mcp_sales", "--log-level", log_level]
    if data is not None:
        args += ["--data", str(data.expanduser().resolve())]
    return ServerLaunch(sys.executable, tuple(args), label="local mcp_sales")


def command_launch(command_line: str) -> ServerLaunch:
    """Run an arbitrary command line (split like a POSIX shell would, but no shell runs).

    Raises:
        TransportError: The line is empty or its quoting is unbalanced.
    """
    try:
        parts = shlex.split(command_line)
    except ValueError as exc:
        raise TransportError(f"cannot split --command {command_line!r}: {exc}; check its quotes") from None
    if not parts:
        raise TransportError("--command is empty; give the server's command line, e.g. 'mcp-sales'")
    return ServerLaunch(parts[0], tuple(parts[1:]))


def profile_launch(name: str, *, ssh: bool = False) -> ServerLaunch:
    """Launch the server of profile ``name``: through ``mcpctl connect``, or with ``ssh=True`` plain ssh.

    The entry is built exactly as ``mcpctl config claude`` builds it, so this runs what Claude would.

    Raises:
        TransportError: The profile is missing or invalid, or mcpctl / ssh cannot be found.
    """
    # Imported here: the --local and --command paths need nothing of the provisioning toolkit.
    from provision.clients.entries import EntryInputs, build_entry
    from provision.errors import McpctlError
    from provision.profiles import load_profile, log_dir

    try:
        entry = build_entry(EntryInputs.from_profile(load_profile(name)), "ssh" if ssh else "proxy")
        hint = "" if ssh else f"`mcpctl connect` logs every step to {log_dir() / f'{name}.log'}"
    except McpctlError as exc:
        raise TransportError(str(exc)) from None
    label = f"ssh to profile '{name}'" if ssh else f"mcpctl connect {name}"
    return ServerLaunch(entry["command"], tuple(entry["args"]), entry.get("env"), label, hint)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Add the options choosing the server: ``--profile/--ssh``, ``--local/--data``, ``--command``,
    ``--url/--api-key``."""
    group = parser.add_argument_group("server (one of --profile, --local, --command, --url)")
    choice = group.add_mutually_exclusive_group(required=True)
    choice.add_argument(
        "--url", metavar="URL", help="a server running over HTTP, e.g. https://sales.example.com/mcp"
    )
    choice.add_argument("--profile", metavar="NAME", help="the server of this mcpctl profile, over SSH")
    choice.add_argument("--local", action="store_true", help="run the server here (python -m mcp_sales)")
    choice.add_argument(
        "--command",
        metavar="CMD",
        help='run this command line as the server, e.g. "mcp-sales --data sales.csv"',
    )
    group.add_argument(
        "--ssh",
        action="store_true",
        help="with --profile: use the plain OpenSSH client instead of `mcpctl connect`",
    )
    group.add_argument("--data", type=Path, metavar="PATH", help="with --local: the sales file to serve")
    add_api_key_option(group)
    add_timeout_options(group)


def add_timeout_options(group: argparse._ActionsContainer) -> None:
    """Add ``--connect-timeout`` and ``--timeout``."""
    group.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the server to answer the handshake (default {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_CALL_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for one tool call (default {DEFAULT_CALL_TIMEOUT:g})",
    )


def add_http_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of an HTTP-only client: ``--url`` (required), ``--api-key`` and the timeouts."""
    group = parser.add_argument_group("server")
    group.add_argument(
        "--url",
        required=True,
        metavar="URL",
        help="the server's MCP endpoint, e.g. https://sales.example.com/mcp",
    )
    add_api_key_option(group)
    add_timeout_options(group)
    parser.set_defaults(profile=None, ssh=False, local=False, command=None, data=None)


def add_api_key_option(group: argparse._ActionsContainer) -> None:
    """Add ``--api-key`` (default ``$MCP_API_KEY``: an argument shows in the process list, a variable not)."""
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"with --url: the server's API key or an OAuth access token (default ${API_KEY_ENV})",
    )


def api_key_from_args(args: argparse.Namespace) -> str | None:
    """The key given with ``--api-key``, else ``$MCP_API_KEY``, else None."""
    return str(args.api_key or os.environ.get(API_KEY_ENV, "")).strip() or None


def launch_from_args(args: argparse.Namespace) -> Server:
    """Turn the parsed server options into a launch, or the HTTP server to reach.

    Raises:
        TransportError: The options contradict each other, or the profile cannot be used.
    """
    if args.api_key and not getattr(args, "url", None):
        raise TransportError("--api-key goes with --url (a server reached over SSH or run here needs none)")
    if getattr(args, "url", None):
        return http_server(args.url, api_key_from_args(args))
    if args.ssh and not args.profile:
        raise TransportError("--ssh goes with --profile NAME (it picks how to reach that profile's host)")
    if args.data is not None and not args.local:
        raise TransportError("--data goes with --local; a profile's server reads the data synced to its host")
    if args.profile:
        return profile_launch(args.profile, ssh=args.ssh)
    if args.local:
        return local_launch(args.data)
    return command_launch(args.command)


@asynccontextmanager
async def open_client(
    launch: Server,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    errlog: TextIO | None = None,
    client_name: str = "mcpctl-example",
) -> AsyncIterator[Client]:
    """Start ``launch`` (or reach the HTTP server) and yield a connected MCP client; stopped on exit.

    ``connect_timeout`` bounds the handshake and every request that does not pass its own timeout
    (tool calls should pass one: a forecast can take longer than a handshake). The server's stderr
    (its log, or ssh's and mcpctl's messages) goes to ``errlog``, by default this process's stderr.

    Raises:
        TransportError: The command cannot be started, or the HTTP server refused us (401, 404...).
        MCPError: The server exited or did not answer in time (see :func:`describe_error`).
    """
    if isinstance(launch, HttpServer):
        async with _open_http_client(launch, connect_timeout, client_name) as client:
            yield client
        return
    transport = stdio_client(launch.parameters(), errlog=errlog or sys.stderr)
    async with AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(_client(transport, connect_timeout, client_name))
        except OSError as exc:
            # Only the spawn itself raises OSError here; the server's own failures arrive as MCPError.
            raise TransportError(f"cannot start {launch.describe()}: {exc.strerror or exc}") from None
        yield client


def _client(transport: Any, connect_timeout: float, client_name: str) -> Client:
    return Client(
        transport,
        mode="legacy",  # the initialize handshake: what Claude Desktop sends, the proxy replays
        read_timeout_seconds=connect_timeout,
        client_info=Implementation(name=client_name, version="1.0"),
    )


@asynccontextmanager
async def _open_http_client(
    server: HttpServer, connect_timeout: float, client_name: str
) -> AsyncIterator[Client]:
    refusals: list[int] = []

    async def note_refusal(response: httpx2.Response) -> None:
        # The SDK turns an HTTP error into a generic JSON-RPC error; keep the status to say what it means.
        if response.status_code in HTTP_REFUSALS:
            refusals.append(response.status_code)

    http = httpx2.AsyncClient(
        headers=server.headers(),
        timeout=httpx2.Timeout(connect_timeout, read=DEFAULT_CALL_TIMEOUT),
        event_hooks={"response": [note_refusal]},
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(http)
        transport = streamable_http_client(server.url, http_client=http)
        try:
            client = await stack.enter_async_context(_client(transport, connect_timeout, client_name))
        except Exception:
            if refusals:
                raise TransportError(f"{server.url} {HTTP_REFUSALS[refusals[0]]}") from None
            raise
        yield client


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """Flatten exception groups (the SDK's task groups wrap errors) into the errors inside them."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        return [leaf for sub in inner for leaf in leaf_exceptions(sub)]
    return [exc]


def describe_error(exc: BaseException, launch: Server | None = None) -> str:
    """Return one line explaining a failure to reach or use the server."""
    leaves = leaf_exceptions(exc)
    known = TransportError | MCPError | TimeoutError | httpx2.HTTPError
    leaf = next((e for e in leaves if isinstance(e, known)), leaves[0])
    where = launch.describe() if launch is not None else "the server"
    if isinstance(leaf, TransportError):
        return str(leaf)
    if isinstance(leaf, httpx2.HTTPError):
        return f"cannot reach {where} ({type(leaf).__name__}); check --url and that the server is running"
    if isinstance(leaf, MCPError):
        if leaf.code == CONNECTION_CLOSED:
            hint = f" ({launch.hint})" if launch is not None and launch.hint else ""
            return f"{where} closed the connection; its messages above say why{hint}"
        if leaf.code == REQUEST_TIMEOUT:
            return f"{where} did not answer in time; raise --connect-timeout / --timeout, or check the host"
        return f"{where} answered with an error: {leaf.error.message}"
    if isinstance(leaf, TimeoutError):
        return f"{where} did not answer in time; raise --timeout, or check the host"
    return f"talking to {where} failed: {type(leaf).__name__}: {leaf}"


def tool_text(result: CallToolResult) -> str:
    """Return the text blocks of a tool result, joined (a tool error's message is its text)."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent)).strip()


def print_error(console: Console, message: str) -> None:
    """Print ``error: MESSAGE`` as one line (never wrapped at the terminal width, markup escaped)."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def quiet_sdk_logging(verbose: bool = False) -> None:
    """Keep the SDK's internal log records (tracebacks of a dying server's output) off the terminal.

    The examples report failures in one line of their own; ``verbose`` shows the SDK's records too.
    """
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("mcp").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
