"""``mcpctl doctor NAME``: run what the MCP client runs, time every phase, and say what is wrong.

The phases, in the order the client goes through them::

    profile  config entry  key file  host key  connect  spawn  initialize  tools/list  tool call

The spawn phase starts *exactly* the command of the client's entry (``mcpctl connect NAME``, or the
OpenSSH command line of an ssh-style entry) with the entry's ``env``, through the MCP SDK's stdio
client, which like the apps passes only a reduced environment; then it speaks MCP over the process's
stdio as the client does (the ``initialize`` handshake). Without an entry, the default proxy command
is checked instead. The time from spawn to the ``initialize`` answer is compared with the 60 s that
Claude Desktop waits (and that cannot be raised): over half of it is a warning, over all of it a
failure, with a fix that names the slow part.

Every finding that is not fine carries one sentence saying what to do. A hard failure (nothing after
it can work: no profile, no key, a changed host key, an unreachable host, a server that does not
start) marks the later phases skipped; other findings (a missing or broken entry, a key others can
read) are reported and the rest still runs, so one run shows everything there is to fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, NoReturn

import anyio

from provision.clients import document, entries, locations, programs
from provision.errors import (
    ClientConfigError,
    ConnectError,
    HostKeyError,
    KeyNeedsPassphrase,
    McpctlError,
    ProfileError,
    SandboxError,
)
from provision.layout import RemoteLayout

if TYPE_CHECKING:
    from asyncssh import SSHKey
    from mcp import Client
    from mcp.client._transport import TransportStreams

    from provision.profiles import Profile
    from provision.ssh.sandbox import SandboxInfo
    from provision.ssh.target import Target

PHASES = (
    "profile",
    "config entry",
    "key file",
    "host key",
    "connect",
    "spawn",
    "initialize",
    "tools/list",
    "tool call",
)
BUDGET_S = 60.0  # Claude Desktop abandons a server whose initialize is not answered by then
WARN_FRACTION = 0.5  # past this share of the budget, a slower day (cold host, bad network) fails
EXPECTED_TOOLS = ("top_n_products", "forecast_sales")
CHEAP_TOOLS = ("list_operations", "dataset_summary")  # read the data, compute next to nothing
_STDERR_LINES = 3
_SHOWN_CHARS = 500
_MAX_TOOL_PAGES = 20
_CHECK_TIMEOUT = 10.0  # seconds for the small command that looks for the server's python


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Check:
    """The outcome of one phase.

    Attributes:
        phase: One of :data:`PHASES`.
        ok: Whether the phase passed (a warning passes).
        seconds: How long the phase took (0 when skipped).
        detail: What was found.
        fix: One sentence saying what to do; set when not ok, and on warnings.
        skipped: The phase did not run because an earlier one failed hard.
        warning: Passed, but something needs attention (no client entry, a slow start).
    """

    phase: str
    ok: bool
    seconds: float
    detail: str
    fix: str | None = None
    skipped: bool = False
    warning: bool = False


@dataclass(frozen=True)
class DoctorReport:
    """Every phase's check, in order."""

    name: str
    checks: tuple[Check, ...]
    budget_s: float = BUDGET_S

    @property
    def ok(self) -> bool:
        """Whether every phase passed (warnings included)."""
        return all(check.ok for check in self.checks)

    @property
    def total_s(self) -> float:
        """Seconds from starting the client's command to the ``initialize`` answer, as the client sees it."""
        return sum(c.seconds for c in self.checks if c.phase in ("spawn", "initialize") and not c.skipped)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed (skipped ones left out)."""
        return tuple(c for c in self.checks if not c.ok and not c.skipped)

    @property
    def warnings(self) -> tuple[Check, ...]:
        """The checks that passed with a warning."""
        return tuple(c for c in self.checks if c.warning)


@dataclass(frozen=True)
class _Launch:
    """What the client starts for this profile."""

    command: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""  # "entry 'sales-demo'" or "the default command", for messages

    @property
    def style(self) -> Literal["proxy", "ssh", "other"]:
        program = _program(self.command)
        if program == "ssh":
            return "ssh"
        if program == "mcpctl" or (self.args[:2] == ("-m", "provision.connect")):
            return "proxy"
        return "other"

    def describe(self) -> str:
        if self.style == "ssh":
            login = next((a for a in self.args if "@" in a and not a.startswith("-")), "?")
            return f"ssh {login} `{self.args[-1] if self.args else ''}`"
        return " ".join([_program(self.command) if self.style == "proxy" else self.command, *self.args])


def _entry_check(ok: bool, detail: str, fix: str | None = None, *, warning: bool = False) -> Check:
    """A check of the config entry phase (its time is filled in when it is recorded)."""
    return Check("config entry", ok, 0.0, detail, fix, warning=warning)


class _HardFailure(Exception):
    """A phase failed so that nothing after it can work."""


# ------------------------------------------------------------------------------------------ helpers


def _since(started: float) -> float:
    return time.perf_counter() - started


def _program(command: str) -> str:
    return re.split(r"[\\/]", command)[-1].lower().removesuffix(".exe")


def _shown(path: Path) -> str:
    """``~/...`` for paths in the home directory: shorter, and the same on every user's screen."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def _clip(text: str, limit: int = _SHOWN_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _innermost(exc: BaseException) -> BaseException:
    """The first real exception inside exception groups (task groups wrap what their tasks raise)."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc


def _message(exc: BaseException) -> str:
    """The message of the innermost exception; for OS errors, the reason and the file."""
    exc = _innermost(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


# Other commands' errors end with "run `mcpctl doctor NAME`": advice to run what is running already.
_DOCTOR_ADVICE = re.compile(
    r"\s*\(`mcpctl doctor [^`]*` checks each step\)"
    r"|;?\s*(?:run )?`mcpctl doctor [^`]*`(?: checks each step| to check it)"
)


def _without_doctor_advice(text: str) -> str:
    return _DOCTOR_ADVICE.sub("", text).replace("?.", "?")


def _stderr_tail(errlog: IO[str]) -> str:
    errlog.flush()
    errlog.seek(0)
    lines = [line.strip() for line in errlog.read().splitlines() if line.strip()]
    return _clip(" | ".join(lines[-_STDERR_LINES:]))


# ------------------------------------------------------------------------------------------ the run


class _Doctor:
    """One diagnosis: the phases in order, each appending its check."""

    def __init__(
        self,
        name: str,
        client: locations.Client,
        config_path: Path | None,
        on_check: Callable[[Check], None] | None,
        timeout: float,
    ) -> None:
        self.name = name
        self.client = client
        self.config_path = config_path
        self.on_check = on_check
        self.timeout = timeout
        self.checks: list[Check] = []
        self.profile: Profile | None = None
        self.target: Target | None = None
        self.launch: _Launch | None = None
        self.connect_s: float | None = None
        self.python: str | None = None  # the server's interpreter on the host
        self.python_present: bool | None = None
        self.sandbox: SandboxInfo | None = None  # the running sandbox, for a sandbox profile
        self.stale_entry_fix: str | None = None  # the entry names a port the host left

    # ------------------------------------------------------------------------------- bookkeeping

    def add(self, check: Check) -> None:
        self.checks.append(check)
        if self.on_check is not None:
            self.on_check(check)

    def flag(self, phase: str, started: float, detail: str, fix: str, *, until: float | None = None) -> None:
        """Record a failed check that took from ``started`` to ``until`` (now); the later phases still run."""
        self.add(Check(phase, False, (until or time.perf_counter()) - started, detail, fix))

    def fail(self, phase: str, started: float, detail: str, fix: str) -> NoReturn:
        """Record a failed check and stop: nothing after it can work.

        Raises:
            _HardFailure: Always.
        """
        self.flag(phase, started, detail, fix)
        raise _HardFailure(phase)

    @property
    def app(self) -> str:
        return "Claude Desktop" if self.client == "claude" else "the Gemini CLI"

    @property
    def config_command(self) -> str:
        return f"`mcpctl config {self.client} {self.name}`"

    async def run(self) -> DoctorReport:
        failed: str | None = None
        try:
            self.check_profile()
            self.check_config_entry()
            self.check_key_file()
            await self.check_host_key()
            await self.check_connect()
            await self.check_session()
        except _HardFailure as exc:
            failed = str(exc)
        for phase in PHASES[len(self.checks) :]:
            self.add(Check(phase, False, 0.0, f"not run: the {failed} check failed", skipped=True))
        return DoctorReport(self.name, tuple(self.checks))

    # ------------------------------------------------------------------------------------ phases

    def check_profile(self) -> None:
        from provision.profiles import load_profile, profiles_dir
        from provision.ssh.profile_target import target_for

        started = time.perf_counter()
        try:
            saved = load_profile(self.name)
            target = target_for(saved)  # a sandbox profile follows its sandbox to its current port
            self.sandbox = self._running_sandbox(saved)
        except (ProfileError, SandboxError) as exc:
            self.fail("profile", started, f"cannot use profile '{self.name}'", str(exc))
            return
        profile = saved.model_copy(update={"port": target.port})
        self.profile, self.target = profile, target
        path = _shown(profiles_dir() / f"{self.name}.toml")
        detail = f"{path}: {profile.kind} {target.user}@{target.address}, server in {profile.remote_dir}"
        self.add(Check("profile", True, _since(started), detail + self._sandbox_note(saved.port)))

    @staticmethod
    def _running_sandbox(profile: Profile) -> SandboxInfo | None:
        """The running sandbox, for a sandbox profile; None for other profiles and a stopped sandbox.

        Raises:
            ProfileError, SandboxError: The sandbox's directory cannot be created.
        """
        if profile.kind != "sandbox":
            return None
        from provision.ssh import sandbox

        return sandbox.status()

    def _sandbox_note(self, saved_port: int) -> str:
        assert self.profile is not None and self.target is not None
        if self.profile.kind != "sandbox":
            return ""
        if self.sandbox is None:
            return " (the sandbox is not running)"
        if self.target.port != saved_port:
            return f" (the sandbox moved from port {saved_port}: the profile follows it)"
        return ""

    def check_config_entry(self) -> None:
        started = time.perf_counter()
        check, self.launch = self._find_entry()
        self.add(dataclasses.replace(check, seconds=_since(started)))

    def check_key_file(self) -> None:
        assert self.target is not None and self.profile is not None
        started = time.perf_counter()
        key = self.target.identity_file
        if key is None:
            self._check_default_keys(started)
            return
        where = f"set identity_file in profile '{self.name}' to the private key the host authorises"
        if not key.exists():
            self.fail("key file", started, f"the identity file {_shown(key)} does not exist", f"{where}.")
        if not key.is_file() or not os.access(key, os.R_OK):
            self.fail(
                "key file",
                started,
                f"the identity file {_shown(key)} is not a file this user can read",
                f"as its owner run `chmod 600 {key}`, or {where}.",
            )
        kind = self._key_algorithm(key, started, where)
        mode = stat.S_IMODE(key.stat().st_mode)
        if os.name == "posix" and mode & 0o077:
            # asyncssh does not mind, but OpenSSH (ssh-style entries, and users testing by hand) refuses.
            self.flag(
                "key file",
                started,
                f"{_shown(key)} ({kind}) has mode {mode:04o}: ssh refuses a private key others can read",
                f"run `chmod 600 {key}`.",
            )
            return
        self.add(
            Check("key file", True, _since(started), f"{_shown(key)}: {kind} private key, mode {mode:04o}")
        )

    async def check_host_key(self) -> None:
        import asyncssh

        from provision.ssh.hostkeys import fetch_host_key
        from provision.ssh.target import HostKey, describe_keys, pinned_phrase

        assert self.target is not None
        target = self.target
        started = time.perf_counter()
        file = _shown(target.known_hosts)
        pin = f"`mcpctl provision {self.name}` (it shows the fingerprint to confirm) or `--host-key`"
        try:
            known = asyncssh.read_known_hosts(str(target.known_hosts))
        except FileNotFoundError:
            self.fail(
                "host key", started, f"{file} does not exist: no host key is pinned", f"pin it with {pin}."
            )
        except (OSError, ValueError) as exc:
            self.fail(
                "host key",
                started,
                f"cannot read {file} ({exc})",
                f"delete {target.known_hosts} and re-pin the key with {pin}.",
            )
        port = None if target.port == 22 else target.port
        pinned, authorities = known.match(target.host_key_alias or target.host, "", port)[:2]
        name = target.known_hosts_name
        if authorities and not pinned:
            detail = f"{file} trusts a certificate authority for {name}; the connect phase checks it"
            self.add(Check("host key", True, _since(started), detail))
            return
        pinned = _distinct(pinned)  # one key can sit on several lines: list and compare it once
        presented: list[HostKey] = []
        fetched: dict[tuple[str, ...], HostKey] = {}  # two pinned keys of one type: ask the host once
        for key in pinned:
            algorithms = tuple(alg.decode("ascii") for alg in key.sig_algorithms)
            try:
                if algorithms not in fetched:
                    fetched[algorithms] = await fetch_host_key(
                        target.host, target.port, timeout=target.connect_timeout, algorithms=algorithms
                    )
            except ConnectError as exc:
                if isinstance(exc.__cause__, asyncssh.KeyExchangeFailed):
                    continue  # the host has no key of this type (any more)
                detail = (
                    f"{file} {pinned_phrase(pinned)} for {name}; not compared: "
                    f"{target.address} did not answer (see connect)"
                )
                self.add(Check("host key", True, _since(started), detail, warning=True))
                return
            except HostKeyError as exc:  # the server showed no key at all
                self.fail("host key", started, str(exc), "ask the host's owner to check its sshd setup.")
            host_key = fetched[algorithms]
            if host_key.fingerprint == key.get_fingerprint("sha256"):
                detail = f"{target.address} presents {host_key.fingerprint}, pinned in {file}"
                self.add(Check("host key", True, _since(started), detail))
                return
            presented.append(host_key)
        if not presented:
            with contextlib.suppress(McpctlError):
                presented.append(
                    await fetch_host_key(target.host, target.port, timeout=target.connect_timeout)
                )
        new = presented[0].fingerprint if presented else "SHA256:..."
        if not pinned:
            self.fail(
                "host key",
                started,
                f"{file} has no key for {name} (the host presents {new})",
                f"check {new} with the host's owner, then pin it with "
                f"`mcpctl provision {self.name} --host-key {new}`.",
            )
        self.fail(
            "host key",
            started,
            f"the host key of {target.address} CHANGED: {file} {pinned_phrase(pinned)} for {name}, but "
            f"the host presents {describe_keys(presented) or 'no key of those types'}",
            f"if the host was rebuilt, confirm {new} with its owner and re-pin it with `mcpctl provision "
            f"{self.name} --host-key {new}` (or delete the line for {name} from {target.known_hosts}); "
            "otherwise do not connect, the connection may be intercepted.",
        )

    async def check_connect(self) -> None:
        from provision.ssh.remote import open_remote

        assert self.target is not None and self.profile is not None
        target = self.target
        started = time.perf_counter()
        try:
            remote = await open_remote(target)
        except McpctlError as exc:
            self.fail("connect", started, _without_doctor_advice(str(exc)), self._connect_fix(exc))
        self.connect_s = _since(started)
        found = "not checked"
        try:
            self.python = RemoteLayout.of(self.profile.remote_dir).server_argv(
                self.profile.data, self.profile.columns, self.profile.server_args
            )[0]
            result = await remote.run(["test", "-x", self.python], check=False, timeout=_CHECK_TIMEOUT)
            self.python_present = result.exit_status == 0
            found = "present" if self.python_present else "MISSING"
        except McpctlError as exc:
            found = f"not checked ({exc})"
        finally:
            await remote.aclose()
        detail = (
            f"logged in to {target.address} as {target.user} in {self.connect_s * 1000:.0f} ms; "
            f"server python {self.python or '?'}: {found}"
        )
        self.add(Check("connect", True, self.connect_s, detail))

    async def check_session(self) -> None:
        """spawn, initialize, tools/list and the tool call, over one client session."""
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp_types import Implementation

        from provision import __version__

        assert self.launch is not None
        launch = self.launch
        params = StdioServerParameters(command=launch.command, args=list(launch.args), env=dict(launch.env))
        spawned: list[float] = []
        released: list[float] = []
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:

            @asynccontextmanager
            async def transport() -> AsyncIterator[TransportStreams]:
                async with stdio_client(params, errlog=errlog) as streams:
                    spawned.append(time.perf_counter())  # the process runs: the client's clock starts
                    try:
                        yield streams
                    finally:
                        # The client let go (a failed answer); what follows is the process's shutdown.
                        released.append(time.perf_counter())

            client = Client(
                transport(),
                mode="legacy",  # the initialize handshake, as Claude Desktop speaks it
                read_timeout_seconds=self.timeout,
                client_info=Implementation(name="mcpctl-doctor", version=__version__),
            )
            started = time.perf_counter()
            # Each request is bounded by read_timeout_seconds; this bounds the whole, shutdown included.
            # Failures inside are only recorded: an exception would cross the SDK's task groups.
            with anyio.move_on_after(self.timeout * 4):
                async with contextlib.AsyncExitStack() as stack:
                    try:
                        await stack.enter_async_context(client)
                    except Exception as exc:
                        self._start_failed(exc, started, spawned, released, errlog)
                    else:
                        if self._started(started, spawned[0], time.perf_counter(), client):
                            names = await self._list_tools(client)
                            if names is not None:
                                await self._call_tool(client, names)
        if len(self.checks) < len(PHASES) and self.checks[-1].ok:
            self.fail(
                PHASES[len(self.checks)],
                started,
                f"no end after {self.timeout * 4:g} s",
                f"`mcpctl logs {self.name}` shows what the server was doing.",
            )
        if len(self.checks) < len(PHASES):
            raise _HardFailure(self.checks[-1].phase)

    # --------------------------------------------------------------------------- config entry

    def _config_file(self) -> Path:
        if self.config_path is not None:
            return Path(os.path.abspath(self.config_path.expanduser()))
        return locations.config_path(self.client)

    def _default_launch(self) -> _Launch:
        args: tuple[str, ...] = ("connect", self.name)
        try:
            command = programs.find_mcpctl()
        except ClientConfigError:
            command, args = sys.executable, ("-m", "provision.connect", self.name)
        # The same variables the entry would carry, so the proxy finds the same profiles.
        env = entries.proxy_entry(self.name, mcpctl_path=command).get("env", {})
        return _Launch(command, args, env, "the default command")

    def _find_entry(self) -> tuple[Check, _Launch]:
        fallback = self._default_launch()
        instead = f"checking `{fallback.describe()}` instead"
        try:
            path = self._config_file()
        except ClientConfigError as exc:
            return _entry_check(False, str(exc), "name the config file with --config-path."), fallback
        shown = _shown(path)
        try:
            text = path.read_bytes().decode("utf-8-sig")
            data = document.parse_config(text, name=shown)
        except FileNotFoundError:
            detail = f"{shown} does not exist, so {self.app} starts no server for '{self.name}'; {instead}"
            fix = f"add the entry with {self.config_command}, then restart {self.app}."
            return _entry_check(True, detail, fix, warning=True), fallback
        except (OSError, UnicodeDecodeError, ClientConfigError) as exc:
            detail = f"{_message(exc)}; {self.app} cannot read any server from it; {instead}"
            fix = f"repair {shown} by hand (or move it away), then run {self.config_command}."
            return _entry_check(False, detail, fix), fallback
        servers = data.get(document.SERVERS_KEY, {})
        key = self._pick(servers)
        if key is None:
            detail = f"{shown} has no entry for profile '{self.name}'; {instead}"
            fix = f"add it with {self.config_command}, then restart {self.app}."
            return _entry_check(True, detail, fix, warning=True), fallback
        return self._judge(key, servers[key], shown, fallback)

    def _pick(self, servers: Mapping[str, object]) -> str | None:
        """Our entry for this profile: ``sales-NAME``, else any entry of ours that runs this profile."""
        default = entries.default_server_name(self.name)
        mine = [k for k, v in servers.items() if entries.is_mcpctl_entry(v) and self._runs_profile(v)]
        if default in mine or (default in servers and not mine):
            return default  # under our name, even if someone else wrote it: it is what the client runs
        return mine[0] if mine else None

    def _runs_profile(self, entry: object) -> bool:
        assert self.profile is not None
        if not isinstance(entry, dict):
            return False
        args, command = entry.get("args"), entry.get("command")
        if not isinstance(args, list) or not isinstance(command, str):
            return False
        if _program(command) == "mcpctl":
            return args[1:2] == [self.name]
        login = f"{self.profile.user}@{self.profile.host}"
        return login in args and self.profile.remote_dir in str(args[-1])

    def _judge(self, key: str, entry: object, shown: str, fallback: _Launch) -> tuple[Check, _Launch]:
        if not isinstance(entry, dict):
            detail = f"entry '{key}' in {shown} is not an object; {self.app} skips it"
            return _entry_check(False, detail, f"rewrite it with {self.config_command}."), fallback
        command, args, env = entry.get("command"), entry.get("args", []), entry.get("env", {})
        if (
            not isinstance(command, str)
            or not command
            or not isinstance(args, list)
            or not all(isinstance(a, str) for a in args)
            or not isinstance(env, dict)
            or not all(isinstance(v, str) for v in env.values())
        ):
            detail = (
                f"entry '{key}' in {shown} needs a command string, a list of string args and a string env"
            )
            return _entry_check(False, detail, f"rewrite it with {self.config_command}."), fallback
        launch = _Launch(command, tuple(args), dict(env), f"entry '{key}'")
        runs = f"entry '{key}' in {shown} runs {launch.describe()}"
        problem = self._command_problem(command, env)
        if problem is not None:
            hard, what, fix = problem
            return _entry_check(not hard, f"{runs}; {what}", fix, warning=not hard), launch
        if not entries.is_mcpctl_entry(entry):
            what = f"{runs}, an entry mcpctl did not write"
            fix = f"if it should run profile '{self.name}', replace it with {self.config_command} --force."
            return _entry_check(True, what, fix, warning=True), launch
        if not self._runs_profile(entry):
            what = f"{runs}, which is not profile '{self.name}'"
            return _entry_check(False, what, f"rewrite it with {self.config_command}."), launch
        stale = self._stale_port(launch)
        if stale is not None:
            self.stale_entry_fix = (
                f"run `mcpctl config {self.client} {self.name} --style ssh` again, then restart {self.app}."
            )
            return _entry_check(False, f"{runs}; {stale}", self.stale_entry_fix), launch
        return _entry_check(True, runs), launch

    def _stale_port(self, launch: _Launch) -> str | None:
        """What is wrong when an ssh-style entry connects to another port than the profile's, else None.

        The port is baked into the OpenSSH command line: a sandbox restarted on another port (or a
        profile edited since) leaves the entry knocking at the old one.
        """
        assert self.profile is not None and self.target is not None
        port = _ssh_port(launch.args) if launch.style == "ssh" else None
        if port is None or port == self.target.port:
            return None
        if self.profile.kind == "sandbox":
            return f"the sandbox now listens on port {self.target.port} but the entry says {port}"
        return f"profile '{self.name}' says port {self.target.port} but the entry says {port}"

    def _command_problem(self, command: str, env: Mapping[str, str]) -> tuple[bool, str, str] | None:
        """(hard, what, fix) when the entry's command cannot be started as written, else None."""
        rewrite = f"rewrite the entry with an absolute path that exists: {self.config_command}."
        if not os.path.isabs(command):
            # The apps search their own PATH, usually shorter than a login shell's.
            found = shutil.which(command, path=env.get("PATH") or os.environ.get("PATH"))
            if found is None:
                return (
                    True,
                    f"`{command}` is not on PATH: the client fails with `spawn {command} ENOENT`",
                    rewrite,
                )
            return (
                False,
                f"`{command}` is looked up on PATH, and the client's PATH is often shorter than a shell's",
                rewrite,
            )
        path = Path(command)
        if not path.exists():
            return True, f"{command} does not exist: the client fails with `spawn {command} ENOENT`", rewrite
        if not path.is_file():
            return True, f"{command} is not a file", rewrite
        if os.name == "posix" and not os.access(path, os.X_OK):
            return True, f"{command} is not executable", f"run `chmod +x {command}`, or {rewrite}"
        return None

    # ------------------------------------------------------------------------------- key file

    def _check_default_keys(self, started: float) -> None:
        assert self.target is not None
        found = [
            p for p in (Path.home() / ".ssh" / n for n in ("id_ed25519", "id_ecdsa", "id_rsa")) if p.is_file()
        ]
        helpers = [
            h
            for h, on in (
                ("the ssh-agent", self.target.use_agent),
                ("~/.ssh/config", self.target.use_ssh_config),
            )
            if on
        ]
        if not found and not helpers:
            self.fail(
                "key file",
                started,
                "the profile names no identity_file and ~/.ssh has no id_ed25519, id_ecdsa or id_rsa",
                f"set identity_file in profile '{self.name}' to the private key the host authorises.",
            )
        used = ", ".join([*(_shown(p) for p in found), *helpers])
        self.add(Check("key file", True, _since(started), f"no identity_file in the profile; trying {used}"))

    def _key_algorithm(self, key: Path, started: float, where: str) -> str:
        import asyncssh

        from provision.ssh.keys import read_identity

        assert self.target is not None
        try:
            return read_identity(key, profile=self.name).algorithm.decode("ascii")
        except (asyncssh.KeyImportError, KeyNeedsPassphrase) as exc:
            if not isinstance(exc, KeyNeedsPassphrase):
                self.fail(
                    "key file",
                    started,
                    f"{_shown(key)} is not a private key ({exc})",
                    f"{where} (the file without .pub).",
                )
            if not self.target.use_agent:
                self.fail(
                    "key file",
                    started,
                    f"{_shown(key)} is encrypted and nobody can type its passphrase when the client starts",
                    f"load it with `ssh-add {key}` and set use_agent = true in profile '{self.name}'.",
                )
            return "encrypted (the ssh-agent signs)"
        except (OSError, ValueError) as exc:
            self.fail("key file", started, f"cannot read {_shown(key)} ({exc})", f"{where}.")

    # -------------------------------------------------------------------------------- connect

    def _connect_fix(self, exc: McpctlError) -> str:
        import asyncssh

        assert self.target is not None and self.profile is not None
        target = self.target
        if isinstance(exc, HostKeyError):
            return str(exc)
        if isinstance(exc, ProfileError):
            return f"fix identity_file in profile '{self.name}'."
        if isinstance(exc.__cause__, asyncssh.PermissionDenied):
            key = f"{target.identity_file}.pub" if target.identity_file else "your public key"
            return (
                f"add {key} to ~{target.user}/.ssh/authorized_keys on the host, or set user and "
                f"identity_file in profile '{self.name}' to a login the host accepts."
            )
        if self.profile.kind == "sandbox":
            return self._sandbox_connect_fix()
        fix = (
            f"check that the host is running and that {target.address} is right and open to SSH from this "
            "machine (sshd running, the port, a firewall or security group)"
        )
        if self.profile.kind == "ec2":
            fix += f"; a stopped EC2 instance is started with `mcpctl start {self.name}`"
        return fix + "."

    def _sandbox_connect_fix(self) -> str:
        """Tell a stopped sandbox from a running one that does not answer (one that moved is followed)."""
        from provision.ssh.sandbox import sandbox_dir

        assert self.target is not None
        running = self.sandbox
        if running is None:
            return (
                "the sandbox is not running: start it with `mcpctl sandbox up` "
                "(`mcpctl connect` also starts it when the client runs it)."
            )
        return (
            f"the sandbox (pid {running.pid}) runs on {running.host}:{running.port} but does not answer: "
            f"restart it with `mcpctl sandbox down` and `mcpctl sandbox up`; "
            f"{_shown(sandbox_dir() / 'server.log')} says what it did."
        )

    # -------------------------------------------------------------------------------- session

    def _start_failed(
        self,
        error: Exception,
        started: float,
        spawned: Sequence[float],
        released: Sequence[float],
        errlog: IO[str],
    ) -> None:
        assert self.launch is not None
        exc, message = _innermost(error), _message(error)
        if not spawned:
            fix = f"rewrite the entry with {self.config_command}."
            if isinstance(exc, PermissionError):
                fix = f"run `chmod +x {self.launch.command}`, or {fix}"
            self.flag("spawn", started, f"cannot start `{self.launch.describe()}`: {message}", fix)
            return
        self.add(Check("spawn", True, spawned[0] - started, self._spawn_detail()))
        ended = released[0] if released else time.perf_counter()
        stderr = _stderr_tail(errlog)
        detail = f"no answer to initialize: {_clip(_without_doctor_advice(message))}"
        if stderr and not _is_answer(exc):
            detail += f"; it printed: {stderr}"  # it just ended: its last words say why
        fix = self._start_fix(f"{message} {stderr}", exc, ended - spawned[0])
        self.flag("initialize", spawned[0], detail, fix, until=ended)

    def _spawn_detail(self) -> str:
        assert self.launch is not None
        return f"started `{self.launch.describe()}` ({self.launch.origin})"

    def _start_fix(self, text: str, exc: BaseException, waited: float) -> str:
        from mcp.shared.exceptions import MCPError
        from mcp_types import REQUEST_TIMEOUT

        assert self.launch is not None
        if self.stale_entry_fix is not None:
            return self.stale_entry_fix  # the entry knocks at a port the host left: nothing else matters
        if self.python_present is False or (
            ".venv/bin/python" in text and ("not found" in text or "No such file" in text)
        ):
            return (
                f"the server's python {self.python or ''} is missing on the host: install the server's "
                f"environment with `mcpctl provision {self.name}`."
            )
        if isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT:
            return self._slow_fix(waited, gave_up=True)
        if "no profile named" in text:
            return (
                "the entry's environment (MCPCTL_HOME, XDG_*) points mcpctl at another profile directory: "
                f"rewrite the entry with {self.config_command}."
            )
        if self.launch.style == "proxy":
            return (
                f"the server stopped before answering: `mcpctl logs {self.name}` shows its error output; "
                f"`mcpctl provision {self.name}` reinstalls it."
            )
        return (
            "the server stopped before answering (its error output is above); "
            f"`mcpctl provision {self.name}` reinstalls it."
        )

    def _slow_fix(self, start_s: float, spawn_s: float = 0.0, *, gave_up: bool = False) -> str:
        """Name the part of the start that eats the budget, and what helps with it.

        The SSH connection is assumed to take as long as the connect phase's own; the rest of the wait
        is the server's start (with the local command's own start, which is short).
        """
        assert self.target is not None
        connect = min(self.connect_s or 0.0, start_s)
        parts = {
            "local start of the command": spawn_s,
            "SSH connection": connect,
            "server's start on the host": max(start_s - connect, 0.0),
        }
        advice = {
            "local start of the command": "check what delays starting programs here (antivirus, a slow disk)",
            "SSH connection": f"check the network path to {self.target.address} (VPN, DNS, a distant region)",
            "server's start on the host": (
                "check the host's load and disk (a cold or small instance) and what the server does "
                f"meanwhile in `mcpctl logs {self.name}`"
            ),
        }
        slowest = max(parts, key=lambda part: parts[part])
        took = f"{'over ' if gave_up else ''}{parts[slowest]:.1f} s"
        return f"the {slowest} takes {took} of the {BUDGET_S:.0f} s {self.app} waits: {advice[slowest]}."

    def _started(self, started: float, spawned: float, answered: float, client: Client) -> bool:
        self.add(Check("spawn", True, spawned - started, self._spawn_detail()))
        init_s, total = answered - spawned, answered - started
        info = client.server_info
        server = f"{info.name} {info.version}" if info is not None else "the server"
        detail = (
            f"{server} answered (protocol {client.protocol_version}) {init_s:.2f} s after the start: "
            f"{total:.1f} s of the {BUDGET_S:.0f} s budget"
        )
        fix = self._slow_fix(init_s, spawned - started)
        if total > BUDGET_S:
            self.flag("initialize", spawned, detail, fix)
            return False
        if total > BUDGET_S * WARN_FRACTION:
            self.add(Check("initialize", True, init_s, detail, fix, warning=True))
        else:
            self.add(Check("initialize", True, init_s, detail))
        return True

    async def _list_tools(self, client: Client) -> list[str] | None:
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
            self.flag(
                "tools/list",
                started,
                f"tools/list failed: {_clip(_message(exc))}",
                f"`mcpctl logs {self.name}` shows what the server reported.",
            )
            return None
        missing = [tool for tool in EXPECTED_TOOLS if tool not in names]
        detail = f"{len(names)} tools: {', '.join(names) or 'none'}"
        if missing:
            self.flag(
                "tools/list",
                started,
                f"{detail}; {', '.join(missing)} missing",
                f"the host runs an old or different server: update it with `mcpctl sync {self.name}`.",
            )
        else:
            self.add(Check("tools/list", True, _since(started), detail))
        return names if any(tool in names for tool in CHEAP_TOOLS) else None

    async def _call_tool(self, client: Client, names: Sequence[str]) -> None:
        from mcp_types import TextContent

        started = time.perf_counter()
        tool = next(t for t in CHEAP_TOOLS if t in names)
        try:
            result = await client.call_tool(tool, {})
        except Exception as exc:
            self.flag(
                "tool call",
                started,
                f"{tool} failed: {_clip(_message(exc))}",
                f"`mcpctl logs {self.name}` shows what the server reported.",
            )
            return
        text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
        if result.is_error:
            self.flag(
                "tool call", started, f"{tool} answered with a tool error", _clip(text) or "(no message)"
            )
            return
        self.add(Check("tool call", True, _since(started), f"{tool}: {_clip(text, 120)}"))


def _is_answer(exc: BaseException) -> bool:
    """Whether ``exc`` is an error the other side sent (its message is the explanation)."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

    return isinstance(exc, MCPError) and exc.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT)


def _ssh_port(args: Sequence[str]) -> int | None:
    """The port an OpenSSH command line connects to (``-p N`` or ``-pN``; 22 without), or None if unclear."""
    for index, arg in enumerate(args):
        if arg == "-p" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("-p") and arg[2:].isdigit():
            value = arg[2:]
        else:
            continue
        return int(value) if value.isdigit() else None
    return 22


def _distinct(keys: Sequence[SSHKey]) -> list[SSHKey]:
    """``keys`` without repeats of the same key, in order."""
    distinct: dict[str, SSHKey] = {}
    for key in keys:
        distinct.setdefault(key.get_fingerprint("sha256"), key)
    return list(distinct.values())


# ---------------------------------------------------------------------------------------- the API


async def diagnose(
    name: str,
    *,
    client: locations.Client = "claude",
    config_path: Path | None = None,
    on_check: Callable[[Check], None] | None = None,
    request_timeout: float = BUDGET_S,
) -> DoctorReport:
    """Run every phase for profile ``name`` (from a running event loop); see :func:`run_doctor`."""
    return await _Doctor(name, client, config_path, on_check, request_timeout).run()


def run_doctor(
    name: str,
    *,
    client: Literal["claude", "gemini"] = "claude",
    config_path: Path | None = None,
    on_check: Callable[[Check], None] | None = None,
    timeout: float = BUDGET_S,
) -> DoctorReport:
    """Run what ``client`` runs for profile ``name``, phase by phase, and report each phase.

    Findings are data, not exceptions: a missing profile, an unreachable host or a server that does
    not start are failed checks with a fix each.

    Args:
        name: The profile.
        client: Whose config entry to check and run: ``claude`` or ``gemini``.
        config_path: Check this config file instead of the client's usual one.
        on_check: Called with each check as soon as it is known (for live output).
        timeout: Seconds each MCP request (initialize, tools/list, the tool call) may take.

    Returns:
        Every phase's check, in :data:`PHASES` order. No :class:`McpctlError` escapes: each problem
        found, including a missing profile, is a failed check.
    """
    return anyio.run(
        lambda: diagnose(
            name, client=client, config_path=config_path, on_check=on_check, request_timeout=timeout
        ),
        backend="asyncio",  # asyncssh runs on asyncio only
    )


__all__ = [
    "BUDGET_S",
    "CHEAP_TOOLS",
    "EXPECTED_TOOLS",
    "PHASES",
    "Check",
    "DoctorReport",
    "diagnose",
    "run_doctor",
]
