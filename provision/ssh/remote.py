"""The one SSH seam: everything mcpctl does on a remote host goes through this module (asyncssh).

What it guarantees:

- **Host keys are always checked** against the target's own known_hosts file; nothing is trusted on
  first use. A changed key and an unpinned host are distinct :class:`HostKeyError` messages that say
  how to re-pin. ``~/.ssh/known_hosts``, ``~/.ssh/config`` and the ssh-agent are not consulted unless the
  target asks (``use_ssh_config``, ``use_agent``).
- **Keepalives are on** (asyncssh has them off by default): a dead peer is noticed after
  ``keepalive_interval * 3`` seconds instead of never.
- **At most 8 channels per connection** (stock sshd allows 10 sessions): :meth:`Remote.run`,
  :meth:`Remote.create_process` and the shared SFTP session each hold one slot while open. sshd frees
  a closed session lazily, so an open it refuses right after a close is retried briefly.
- **Commands are built from quoted parts** (:func:`provision.shell.join`) and run by the remote user's
  login shell (sshd runs ``$SHELL -c LINE``), which must be POSIX-compatible (sh, dash, bash, zsh).
- **Output is the command's own** with ``clean=True`` (the default): the login shell may print junk
  first (Debian's bash sources ``~/.bashrc`` even for ``ssh host cmd``), so a random marker is printed
  just before the command is ``exec``'d and everything before it is discarded.
- **Stopped commands really stop**: the marker line also carries the command's pid (sshd makes it a
  process-group leader), so a ``run`` timeout and :meth:`Remote.kill` kill the whole group with
  ``kill`` on the host. SSH signal requests alone are not enough: sshd ignores them for root logins.
- **Errors are ours**: asyncssh and OSError failures become :class:`ConnectError`, :class:`HostKeyError`,
  :class:`RemoteError` or :class:`ProfileError`, each saying what to do next.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import hashlib
import hmac
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex
from typing import Any, TypeVar

import asyncssh

from provision import shell
from provision.errors import ConnectError, HostKeyError, McpctlError, ProfileError, RemoteError
from provision.profiles import write_private_file

MAX_CHANNELS = 8
KEEPALIVE_COUNT_MAX = 3
CLOSE_TIMEOUT = 5.0  # seconds to wait for a closing channel or connection before giving up on it
# Host key algorithms in the order we prefer them when asking a server for its key.
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
_HOST_KEY_FAMILIES = (
    ("ssh-ed25519",),
    ("ecdsa-sha2-nistp256",),
    ("ecdsa-sha2-nistp384",),
    ("ecdsa-sha2-nistp521",),
    ("rsa-sha2-512", "rsa-sha2-256"),
)
_T = TypeVar("_T")
_OPEN_RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2)  # seconds between refused channel opens
_PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
_TAIL_LINES = 8
_TAIL_CHARS = 800


# ------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Target:
    """Where and how to log in. Built by ``Profile.target()``; tests build it directly."""

    host: str
    port: int
    user: str
    known_hosts: Path  # this target's own known_hosts; checking is strict, always
    identity_file: Path | None = None  # None: the default keys in ~/.ssh, as ssh does
    host_key_alias: str | None = None  # look the key up under this name instead of [host]:port
    use_agent: bool = False
    use_ssh_config: bool = False
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    name: str | None = None  # the profile name, used in the advice our error messages give

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets), for messages."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name this target's key is pinned under in its known_hosts file."""
        return self.host_key_alias or known_hosts_entry(self.host, self.port)

    @property
    def _ref(self) -> str:
        return self.name or "NAME"


@dataclass(frozen=True)
class RunResult:
    """The outcome of :meth:`Remote.run`. ``exit_status`` is negative (-N) when killed by signal N and
    255 when the host reported no status at all (as ``ssh`` does)."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class HostKey:
    """A server's host key as fetched from the server."""

    algorithm: str  # e.g. "ssh-ed25519"
    public_key_line: str  # OpenSSH format without comment: "ssh-ed25519 AAAA..."
    fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it

    @classmethod
    def from_ssh_key(cls, key: asyncssh.SSHKey) -> HostKey:
        """Describe an asyncssh key."""
        line = " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])
        return cls(key.algorithm.decode("ascii"), line, key.get_fingerprint("sha256"))


@dataclass(frozen=True)
class HostKeySpec:
    """What the user gave with ``--host-key``: a public key line, or only its SHA256 fingerprint."""

    fingerprint: str
    public_key_line: str | None = None
    algorithm: str | None = None
    host_key_algorithms: tuple[str, ...] = ()  # what to ask the server for to get this key type

    def matches(self, key: HostKey) -> bool:
        """Return whether ``key`` is the key the user described."""
        return key.fingerprint == self.fingerprint


def known_hosts_entry(host: str, port: int) -> str:
    """Return the known_hosts name for ``host``/``port``: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


# --------------------------------------------------------------------------------- error translation


def _unreachable(exc: BaseException, host: str, port: int, timeout: float, ref: str) -> ConnectError:
    """Translate a failure to reach host:port (before any SSH login) into a ConnectError."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    doctor = f"`mcpctl doctor {ref}` checks each step"
    if isinstance(exc, socket.gaierror):
        return ConnectError(
            f"cannot resolve the host name '{host}' ({exc.strerror}); check the spelling in the profile "
            "and your DNS or VPN."
        )
    # Checked before OSError: on Python >= 3.11 asyncio.TimeoutError is TimeoutError, an OSError.
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ConnectError(
            f"cannot reach {where}: no answer within {timeout:g} s; check that the host is running, the "
            f"address is right and a firewall or security group lets SSH in from this machine ({doctor})."
        )
    refused = isinstance(exc, ConnectionRefusedError) or (
        # A name with several addresses fails with one OSError listing them all, and no errno.
        isinstance(exc, OSError) and exc.errno is None and f"[Errno {errno.ECONNREFUSED}]" in str(exc)
    )
    if refused:
        return ConnectError(
            f"cannot reach {where}: connection refused; is sshd running and the port right? ({doctor})."
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return ConnectError(
            f"cannot reach {where}: {exc.strerror}; check the address and your network or VPN ({doctor})."
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(
            f"{where} closed the SSH connection during login ({exc.reason}); look at the sshd log on the "
            f"host (MaxStartups, AllowUsers, key exchange) ({doctor})."
        )
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return ConnectError(f"cannot reach {where}: {detail}; {doctor}.")


def _auth_error(target: Target) -> ConnectError:
    if target.identity_file is not None:
        keys = f"identity file {target.identity_file}"
        fix = f"add {target.identity_file}.pub to ~{target.user}/.ssh/authorized_keys on the host"
    else:
        keys = "the default keys in ~/.ssh" + (" and the ssh-agent" if target.use_agent else "")
        fix = f"set identity_file in the profile to a key authorised for '{target.user}' on the host"
    return ConnectError(
        f"{target.address} refused the login of user '{target.user}' with {keys}; {fix}, or fix the "
        f"user or identity_file in profile '{target._ref}'."
    )


def _host_key_error(
    target: Target, known: asyncssh.SSHKnownHosts, client: _RecordingClient, reason: str
) -> HostKeyError:
    file = target.known_hosts
    ref = target._ref
    if client.offered is None:  # rejected before our hook ran, e.g. a revoked key
        return HostKeyError(
            f"the host key of {target.address} was rejected ({reason}); check {file} and re-pin it with "
            f"`mcpctl provision {ref} --host-key ...`."
        )
    host, addr, port, key = client.offered
    new = HostKey.from_ssh_key(key)
    # Look the host up exactly as asyncssh did, to tell "changed" from "never pinned".
    pinned = known.match(host, addr, None if port == 22 else port)[0]
    if pinned:
        return HostKeyError(
            f"the host key of {target.address} CHANGED: {file} {pinned_phrase(pinned)} for "
            f"{target.known_hosts_name}, but the host now presents {describe_keys([new])}; if the host "
            f"was rebuilt, check the new fingerprint and re-pin it with `mcpctl provision {ref} "
            f"--host-key {new.fingerprint}` or delete the line for {target.known_hosts_name} from "
            f"{file}, otherwise do not connect: the connection may be intercepted."
        )
    return HostKeyError(
        f"the host key of {target.address} is not pinned in {file} (the host presents {new.fingerprint}); "
        f"mcpctl never trusts a key on first use: check that fingerprint and pin it with "
        f"`mcpctl provision {ref} --host-key {new.fingerprint}`."
    )


def describe_keys(keys: Iterable[HostKey]) -> str:
    """List each distinct key once, in order, as ``SHA256:... (ssh-ed25519)``, comma-separated.

    One key is often matched more than once (pinned under a name that is also the address, as
    127.0.0.1 is, or on two lines); listed twice, it would read as two different keys.
    """
    distinct: dict[str, str] = {}
    for key in keys:
        distinct.setdefault(key.fingerprint, key.algorithm)
    return ", ".join(f"{fingerprint} ({algorithm})" for fingerprint, algorithm in distinct.items())


def pinned_phrase(keys: Iterable[asyncssh.SSHKey]) -> str:
    """``pins SHA256:... (type)``, or ``pins N keys (...)`` when several distinct keys are pinned."""
    described = [HostKey.from_ssh_key(key) for key in keys]
    count = len({key.fingerprint for key in described})
    listed = describe_keys(described)
    return f"pins {count} keys ({listed})" if count > 1 else f"pins {listed}"


def _dropped(target: Target, exc: BaseException, doing: str) -> ConnectError:
    reason = exc.reason if isinstance(exc, asyncssh.Error) else (str(exc) or type(exc).__name__)
    return ConnectError(
        f"the SSH connection to {target.address} dropped while {doing} ({reason}); run the command "
        f"again, and `mcpctl doctor {target._ref}` if it keeps happening."
    )


def _tail(data: str) -> str:
    lines = [line for line in data.strip().splitlines() if line.strip()][-_TAIL_LINES:]
    text = " | ".join(lines)
    return text[-_TAIL_CHARS:] if text else "(no error output)"


# ---------------------------------------------------------------------------------------- connection


class _RecordingClient(asyncssh.SSHClient):
    """Remembers the host key a server offered when it is not in known_hosts (for the error message).

    asyncssh calls ``validate_host_public_key`` only for keys known_hosts does not trust; returning
    False keeps such keys rejected.
    """

    def __init__(self) -> None:
        super().__init__()
        self.offered: tuple[str, str, int, asyncssh.SSHKey] | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = (host, addr, port, key)
        return False


def _load_known_hosts(target: Target) -> asyncssh.SSHKnownHosts:
    """Read the target's known_hosts; a missing file means the host was never pinned.

    An explicit, loaded object also guarantees asyncssh never falls back to ~/.ssh/known_hosts (it
    does when given an empty value).
    """
    path = target.known_hosts
    try:
        return asyncssh.read_known_hosts(str(path))
    except FileNotFoundError:
        raise HostKeyError(
            f"the host key of {target.address} is not pinned: {path} does not exist; pin it with "
            f"`mcpctl provision {target._ref}` (shows the fingerprint to confirm) or `--host-key`."
        ) from None
    except (OSError, ValueError) as exc:
        raise HostKeyError(
            f"cannot read the pinned host keys in {path} ({exc}); delete the file and re-pin with "
            f"`mcpctl provision {target._ref} --host-key ...`."
        ) from exc


def _connect_options(
    target: Target, known: asyncssh.SSHKnownHosts, client: _RecordingClient
) -> dict[str, Any]:
    """The keyword arguments for ``asyncssh.connect``: explicit, so nothing comes from ~/.ssh by accident."""
    options: dict[str, Any] = {
        "username": target.user,
        "known_hosts": known,
        "host_key_alias": target.host_key_alias or (),
        # config=() would read ~/.ssh/config; None loads no file at all.
        "config": () if target.use_ssh_config else None,
        # agent_path=() means $SSH_AUTH_SOCK; None means no agent.
        "agent_path": () if target.use_agent else None,
        # () means ~/.ssh/id_* (IdentityFile from ~/.ssh/config when use_ssh_config), as ssh does.
        "client_keys": [str(target.identity_file)] if target.identity_file else (),
        "password_auth": False,  # keys only: nobody is there to type a password
        "kbdint_auth": False,
        "connect_timeout": target.connect_timeout,
        "keepalive_interval": target.keepalive_interval,
        "keepalive_count_max": KEEPALIVE_COUNT_MAX,
        "client_factory": lambda: client,
        # AES-GCM first: asyncssh runs it in OpenSSL's C code (AES-NI), about 1.3x the throughput of
        # its chacha20-poly1305 on large syncs here (docs/BENCHMARKS.md). The rest stay as fallbacks.
        "encryption_algs": _PREFERRED_CIPHERS,
    }
    if target.identity_file:
        # With an agent, an encrypted identity file is skipped (the agent holds the unlocked key).
        options["ignore_encrypted"] = target.use_agent
    if not target.use_ssh_config:
        options["gss_auth"] = False
        options["gss_kex"] = False
    return options


class Remote:
    """One open SSH connection to a target, reused for a whole mcpctl command.

    Attributes:
        conn: The asyncssh connection (for what this class does not wrap; count channels you open on
            it yourself with :meth:`channel`).
        target: Where it is connected.
        connect_options: The exact keyword arguments given to ``asyncssh.connect`` (for diagnosis).
    """

    def __init__(self, conn: asyncssh.SSHClientConnection, target: Target, options: dict[str, Any]) -> None:
        self.conn = conn
        self.target = target
        self.connect_options = options
        self._slots = asyncio.Semaphore(MAX_CHANNELS)
        self._in_use = 0
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_lock = asyncio.Lock()
        self._watchers: set[asyncio.Task[None]] = set()
        self._pids: dict[asyncssh.SSHClientProcess[bytes], int] = {}

    # ------------------------------------------------------------------------------------ channels

    @property
    def channels_in_use(self) -> int:
        """How many of the :data:`MAX_CHANNELS` slots are held right now."""
        return self._in_use

    async def _acquire(self) -> None:
        await self._slots.acquire()
        self._in_use += 1

    def _release(self) -> None:
        self._in_use -= 1
        self._slots.release()

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    def channel(self) -> AbstractAsyncContextManager[None]:
        """Hold one of the connection's channel slots (at most 8 channels at once) while inside."""
        return self._slot()

    # ------------------------------------------------------------------------------------ commands

    async def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | bytes | None = None,
        timeout: float | None = None,
        clean: bool = True,
        secrets: Sequence[str] = (),
    ) -> RunResult:
        """Run a command to completion and collect its output (decoded as UTF-8, bad bytes replaced).

        stdin gets ``input`` then end-of-file, so a command reading stdin never waits forever.

        Args:
            argv: The program (an executable, not a shell builtin, with ``clean``) and its arguments.
            check: Raise RemoteError when the exit status is not 0.
            input: Data for the command's stdin.
            timeout: Seconds to wait; on expiry the command's process group is killed (SIGKILL) and
                RemoteError raised.
            clean: Discard whatever the login shell prints before the command starts (see the module
                docstring); without it stdout and stderr start with any rc-file junk, and a timed-out
                command can only be signalled through SSH, which sshd refuses for root logins.
            secrets: Strings to mask in error messages (tokens on the command line).

        Returns:
            The exit status and the command's stdout and stderr.

        Raises:
            RemoteError: Exit status != 0 with ``check`` (the message has the command and the end of
                its stderr), timeout, the host refusing a new session, or the login shell not running
                the command.
            ConnectError: The connection dropped.
        """
        argv = tuple(argv)
        command = shell.join(argv)
        shown = shell.mask(command, secrets)
        marker = b""
        if clean:
            command, marker = _with_marker(command, stderr=True)
        data = input.encode("utf-8") if isinstance(input, str) else input
        timed_out: asyncssh.TimeoutError | None = None
        async with self.channel():
            process = await self._open_process(command, shown)
            try:
                with contextlib.suppress(BrokenPipeError, ConnectionError):
                    if data:  # a command that exits without reading stdin closes it under us: fine
                        process.stdin.write(data)
                    process.stdin.write_eof()
                completed = await process.wait(timeout=timeout)
            except asyncssh.TimeoutError as exc:
                timed_out = exc
            except (asyncssh.Error, OSError) as exc:
                raise _dropped(self.target, exc, f"running `{shown}`") from exc
            finally:
                process.close()
        if timed_out is not None:
            # Killed after giving the slot back: the kill needs a channel of its own.
            marked = _split_marker(_as_bytes(timed_out.stdout), marker) if clean else None
            await self._kill(process, marked[0] if marked else None, "KILL")
            raise RemoteError(
                f"`{shown}` did not finish within {timeout:g} s on {self.target.address} and was "
                "killed; give it more time or look at what it waits for."
            )
        stdout = _as_bytes(completed.stdout)
        stderr = _as_bytes(completed.stderr)
        status = completed.returncode if completed.returncode is not None else 255
        if clean:
            marked = _split_marker(stdout, marker)
            if marked is None:
                raise RemoteError(
                    f"the login shell of '{self.target.user}' on {self.target.address} exited "
                    f"(status {status}) before running `{shown}`; it printed: "
                    f"{_tail(_decode(stdout + stderr))}; check that user's shell and rc files."
                )
            stdout = marked[1]
            stderr = (_split_marker(stderr, marker) or (None, b""))[1]
        result = RunResult(argv, status, _decode(stdout), _decode(stderr))
        if check and status != 0:
            raise RemoteError(
                f"`{shown}` failed on {self.target.address} with exit status {status}: "
                f"{shell.mask(_tail(result.stderr), secrets)}."
            )
        return result

    async def create_process(
        self, argv: Sequence[str], *, clean: bool = True, start_timeout: float = 30.0, **kwargs: Any
    ) -> asyncssh.SSHClientProcess[bytes]:
        """Start a long-running command with binary stdin/stdout/stderr and no pty.

        The process holds a channel slot until its channel closes. With ``clean`` (the default), the
        login shell's junk is read off stdout before this returns, so the first byte the caller reads
        is the command's own (redirect stdout afterwards with ``process.redirect_stdout(...)``), and
        the remote pid is known, so :meth:`kill` can stop the command's whole process group.

        Args:
            argv: The program (an executable, not a shell builtin, with ``clean``) and its arguments.
            clean: Discard what the login shell prints on stdout before the command starts.
            start_timeout: Seconds to wait for the command to start with ``clean``.
            **kwargs: Passed to ``asyncssh.SSHClientConnection.create_process`` (not ``encoding`` or
                ``request_pty``; not ``stdout`` with ``clean``).

        Returns:
            The running process.

        Raises:
            ValueError: ``stdout`` given with ``clean``.
            RemoteError: The host refused a new session or the login shell did not start the command.
            ConnectError: The connection dropped.
        """
        if clean and "stdout" in kwargs:
            raise ValueError("create_process(clean=True) reads stdout itself; redirect it afterwards")
        command = shell.join(argv)
        shown = command
        marker = b""
        if clean:
            command, marker = _with_marker(command, stderr=False)
        await self._acquire()
        try:
            process = await self._open_process(command, shown, **kwargs)
        except BaseException:
            self._release()
            raise
        watcher = asyncio.get_running_loop().create_task(self._release_when_closed(process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        if clean:
            try:
                line = await asyncio.wait_for(_read_marker_line(process, marker), start_timeout)
            except asyncio.IncompleteReadError as exc:
                process.close()
                raise RemoteError(
                    f"the login shell of '{self.target.user}' on {self.target.address} exited before "
                    f"running `{shown}`; it printed: {_tail(_decode(exc.partial))}; check that user's "
                    "shell and rc files."
                ) from None
            except asyncio.TimeoutError:
                process.close()
                raise RemoteError(
                    f"`{shown}` did not start within {start_timeout:g} s on {self.target.address}; "
                    "check the user's rc files for something slow or waiting for input."
                ) from None
            except (asyncssh.Error, OSError) as exc:
                process.close()
                raise _dropped(self.target, exc, f"starting `{shown}`") from exc
            marked = _split_marker(line, marker)
            if marked is not None and marked[0] is not None and not watcher.done():
                self._pids[process] = marked[0]  # the watcher forgets it when the channel closes
        return process

    def remote_pid(self, process: asyncssh.SSHClientProcess[bytes]) -> int | None:
        """The remote pid of a process started with ``clean`` (it leads its own process group)."""
        return self._pids.get(process)

    async def kill(self, process: asyncssh.SSHClientProcess[bytes], signal: str = "TERM") -> None:
        """Signal a process started by :meth:`create_process` and close its channel.

        With a known remote pid the whole process group gets ``signal`` (through ``kill`` on the host,
        which works for every login user); otherwise it goes as an SSH signal request, which sshd
        ignores for root logins.

        Args:
            process: The process.
            signal: A signal name without ``SIG`` (TERM, KILL, HUP, INT).
        """
        await self._kill(process, self._pids.get(process), signal)

    async def _kill(self, process: asyncssh.SSHClientProcess[bytes], pid: int | None, signal: str) -> None:
        if pid is not None:
            # sshd makes each session's command a session and process-group leader: -pid is the group.
            # Bounded by wait_for, not run(timeout=): a kill that times out must not try to kill itself.
            with contextlib.suppress(McpctlError, asyncio.TimeoutError):
                await asyncio.wait_for(
                    self.run(["kill", "-s", signal, "--", f"-{pid}"], check=False), CLOSE_TIMEOUT
                )
        else:
            with contextlib.suppress(asyncssh.Error, OSError):
                process.send_signal(signal)
        process.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(process.wait_closed(), CLOSE_TIMEOUT)

    async def _open_channel(self, opener: Callable[[], Awaitable[_T]]) -> _T:
        """Open a channel, retrying briefly when sshd refuses it although we are under the limit.

        sshd frees a closed session only on a later pass of its main loop, so an open that arrives
        right behind the close of another channel can be refused: a few quick retries absorb that.
        """
        for delay in _OPEN_RETRY_DELAYS:
            try:
                return await opener()
            except asyncssh.ChannelOpenError:
                if self.conn.is_closed():
                    raise
            await asyncio.sleep(delay)
        return await opener()

    async def _open_process(
        self, command: str, shown: str, **kwargs: Any
    ) -> asyncssh.SSHClientProcess[bytes]:
        try:
            return await self._open_channel(
                lambda: self.conn.create_process(command, encoding=None, request_pty=False, **kwargs)
            )
        except asyncssh.ChannelOpenError as exc:
            if self.conn.is_closed():
                raise _dropped(self.target, exc, f"starting `{shown}`") from exc
            raise RemoteError(
                f"{self.target.address} refused a new SSH session for `{shown}` ({exc.reason}); too many "
                "sessions are open on this connection: sshd's MaxSessions is lower than 8 on the host."
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise _dropped(self.target, exc, f"starting `{shown}`") from exc

    async def _release_when_closed(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        try:
            await process.wait_closed()
        finally:
            self._pids.pop(process, None)
            self._release()

    # ---------------------------------------------------------------------------------------- sftp

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        async with self._sftp_lock:
            if self._sftp is None:
                await self._acquire()  # held until the connection closes
                try:
                    self._sftp = await self._open_channel(self.conn.start_sftp_client)
                except BaseException as exc:
                    self._release()
                    if isinstance(exc, (asyncssh.Error, OSError)) and self.conn.is_closed():
                        raise _dropped(self.target, exc, "opening SFTP") from exc
                    if isinstance(exc, (asyncssh.ChannelOpenError, asyncssh.SFTPError)):
                        raise RemoteError(
                            f"{self.target.address} offers no SFTP ({exc.reason}); enable it in the host's "
                            "sshd_config with `Subsystem sftp internal-sftp` and restart sshd."
                        ) from exc
                    if isinstance(exc, (asyncssh.Error, OSError)):
                        raise _dropped(self.target, exc, "opening SFTP") from exc
                    raise
            return self._sftp

    @asynccontextmanager
    async def _sftp_session(self) -> AsyncIterator[asyncssh.SFTPClient]:
        client = await self._sftp_client()
        try:
            yield client
        except asyncssh.SFTPConnectionLost as exc:
            raise _dropped(self.target, exc, "transferring files") from exc
        except asyncssh.SFTPError as exc:
            raise RemoteError(
                f"a file operation on {self.target.address} failed: {exc.reason}; check the path, its "
                "permissions and the free space on the host."
            ) from exc

    def sftp(self) -> AbstractAsyncContextManager[asyncssh.SFTPClient]:
        """Use the connection's one SFTP session (opened on first use, closed with the connection).

        An :class:`asyncssh.SFTPError` escaping the block becomes a RemoteError; catch it inside the
        block to handle it (e.g. ``SFTPNoSuchFile`` for "not there yet").

        Raises:
            RemoteError: The host offers no SFTP, or an SFTP operation in the block failed.
            ConnectError: The connection dropped.
        """
        return self._sftp_session()

    # --------------------------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Close the SFTP session and the connection (bounded wait)."""
        if self._sftp is not None:
            self._sftp.exit()
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(self._sftp.wait_closed(), CLOSE_TIMEOUT)
            self._sftp = None
            self._release()
        self.conn.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self.conn.wait_closed(), CLOSE_TIMEOUT)
        for watcher in list(self._watchers):
            watcher.cancel()


async def open_remote(target: Target) -> Remote:
    """Connect and authenticate; the caller must ``await remote.aclose()`` (prefer :func:`connect`).

    Raises:
        HostKeyError: The host key is not pinned, changed, or the known_hosts file is unreadable.
        ConnectError: The host cannot be reached (refused, unresolvable, unreachable, timeout) or
            refused the login.
        ProfileError: The identity file is missing, unreadable, or encrypted without an agent.
    """
    known = _load_known_hosts(target)
    identity = target.identity_file
    if identity is not None and not os.access(identity, os.R_OK):
        raise ProfileError(
            f"the identity file {identity} of profile '{target._ref}' "
            f"{'is not readable' if identity.exists() else 'does not exist'}; "
            "fix identity_file in the profile."
        )
    client = _RecordingClient()
    options = _connect_options(target, known, client)
    try:
        conn = await asyncssh.connect(target.host, target.port, **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise _host_key_error(target, known, client, exc.reason) from exc
    except asyncssh.PermissionDenied as exc:
        raise _auth_error(target) from exc
    except asyncssh.KeyImportError as exc:
        hint = " (load it into ssh-agent and set use_agent = true)" if "assphrase" in str(exc) else ""
        raise ProfileError(
            f"cannot use the identity file {identity} of profile '{target._ref}': {exc}{hint}; fix "
            "identity_file in the profile."
        ) from exc
    except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
        raise _unreachable(exc, target.host, target.port, target.connect_timeout, target._ref) from exc
    return Remote(conn, target, options)


@asynccontextmanager
async def connect(target: Target) -> AsyncIterator[Remote]:
    """Open one connection for a whole command and close it at the end of the block.

    asyncssh errors escaping the block because the connection dropped (a raw ``conn`` call) become
    ConnectError.

    Raises:
        HostKeyError, ConnectError, ProfileError: See :func:`open_remote`.
    """
    remote = await open_remote(target)
    try:
        yield remote
    except asyncssh.DisconnectError as exc:
        raise _dropped(target, exc, "working on the host") from exc
    except asyncssh.ChannelOpenError as exc:
        if remote.conn.is_closed():
            raise _dropped(target, exc, "working on the host") from exc
        raise
    finally:
        await remote.aclose()


# ----------------------------------------------------------------------------------- clean output


def _with_marker(command: str, *, stderr: bool) -> tuple[str, bytes]:
    """Prefix ``command`` with a random marker line carrying the shell's pid, and ``exec`` the command.

    The printed line is ``MARKER PID``; ``exec`` keeps the pid, so PID is the command's own. The
    marker is printed in two halves so that a shell tracing its commands (``set -x`` in an rc file)
    cannot echo the whole marker before the real one.

    Returns:
        The command line and the marker (without the `` PID\\n`` that follows it).
    """
    head, tail = "__mcpctl_", token_hex(16) + "__"
    printf = f"printf '%s%s %s\\n' {head} {tail} $$"
    prefix = f"{printf}; {printf} >&2; " if stderr else f"{printf}; "
    return f"{prefix}exec {command}", f"{head}{tail}".encode("ascii")


def _split_marker(data: bytes, marker: bytes) -> tuple[int | None, bytes] | None:
    """Find the marker line in ``data``: return (pid, what follows the line), or None if absent."""
    start = data.find(marker + b" ")
    if start < 0:
        return None
    end = data.find(b"\n", start)
    if end < 0:
        return None
    pid_text = data[start + len(marker) + 1 : end]
    return (int(pid_text) if pid_text.isdigit() else None), data[end + 1 :]


async def _read_marker_line(process: asyncssh.SSHClientProcess[bytes], marker: bytes) -> bytes:
    """Read stdout up to and including the marker line (discarding what the login shell printed)."""
    await process.stdout.readuntil(marker + b" ")
    return marker + b" " + await process.stdout.readuntil(b"\n")


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    return data.encode("utf-8") if isinstance(data, str) else b""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------------------- host keys


async def fetch_host_key(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    algorithms: Sequence[str] = HOST_KEY_ALGORITHMS,
    name: str | None = None,
) -> HostKey:
    """Ask a server for its host key without logging in (to show the fingerprint and pin it).

    Args:
        host: Host name or address.
        port: SSH port.
        timeout: Seconds for the whole exchange.
        algorithms: Host key algorithms to offer, most preferred first (the server picks the first
            one it has).
        name: The profile name, for the advice in error messages.

    Raises:
        ConnectError: The host cannot be reached or offers none of ``algorithms``.
        HostKeyError: The server presented no host key.
    """
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(host, port, server_host_key_algs=list(algorithms), config=None),
            timeout,
        )
    except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
        raise _unreachable(exc, host, port, timeout, name or "NAME") from exc
    if key is None:
        raise HostKeyError(f"{host}:{port} presented no host key; mcpctl cannot pin it, use another host.")
    return HostKey.from_ssh_key(key)


async def verify_host_key(
    host: str, port: int, expected: HostKeySpec, *, timeout: float = 10.0, name: str | None = None
) -> HostKey:
    """Fetch the server's key of the type the user described and check it is the one described.

    For a bare fingerprint the key type is unknown, so each type is asked for in turn.

    Raises:
        HostKeyError: The server has no key matching ``expected`` (the message lists what it has).
        ConnectError: The host cannot be reached.
    """
    families = [expected.host_key_algorithms] if expected.host_key_algorithms else list(_HOST_KEY_FAMILIES)
    seen: list[str] = []
    lacked: ConnectError | None = None
    for family in families:
        try:
            key = await fetch_host_key(host, port, timeout=timeout, algorithms=family, name=name)
        except ConnectError as exc:
            # A server without a key of this type fails the key exchange: asyncssh reports that as
            # KeyExchangeFailed, but OpenSSH simply hangs up ("no matching host key type"), which
            # arrives as ConnectionLost or, depending on timing, a TCP reset. The host answered the
            # TCP connection, so try the next type.
            if isinstance(
                exc.__cause__, (asyncssh.KeyExchangeFailed, asyncssh.ConnectionLost, ConnectionResetError)
            ):
                lacked = exc
                continue
            raise
        if expected.matches(key):
            return key
        seen.append(key.fingerprint)
    if not seen and lacked is not None:
        raise lacked  # no type at all answered: the host hangs up on everyone, report it as such
    raise HostKeyError(
        f"{host}:{port} does not have the host key {expected.fingerprint} (it presents "
        f"{', '.join(seen) or 'no key of that type'}); check the fingerprint with the host's owner "
        "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host)."
    )


def parse_host_key(text: str) -> HostKeySpec:
    """Parse a ``--host-key`` value: an OpenSSH public key line (``ssh-ed25519 AAAA... [comment]``, or
    a ``ssh-keyscan``/known_hosts line with the host first) or a fingerprint ``SHA256:...``.

    Raises:
        HostKeyError: The value is neither.
    """
    value = text.strip()
    if value[:7].upper() == "SHA256:":
        digest = value[7:].rstrip("=")
        try:
            raw = base64.b64decode(digest + "=" * (-len(digest) % 4), validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise HostKeyError(
                f"'{value}' is not a SHA256 fingerprint; copy it whole from `ssh-keygen -lf KEY.pub`."
            )
        return HostKeySpec(fingerprint=f"SHA256:{digest}")
    if value[:4].upper() == "MD5:":
        raise HostKeyError("MD5 fingerprints are too weak to pin; give the SHA256 one (`ssh-keygen -lf`).")
    parts = value.split()
    for start in (0, 1):  # "TYPE BASE64 [comment]" or "HOST TYPE BASE64 [comment]"
        candidate = " ".join(parts[start : start + 2])
        try:
            key = asyncssh.import_public_key(candidate)
        except (asyncssh.KeyImportError, ValueError):
            continue
        described = HostKey.from_ssh_key(key)
        return HostKeySpec(
            fingerprint=described.fingerprint,
            public_key_line=described.public_key_line,
            algorithm=described.algorithm,
            host_key_algorithms=tuple(a.decode("ascii") for a in key.sig_algorithms),
        )
    raise HostKeyError(
        f"'{value[:60]}' is neither an OpenSSH public key line (ssh-ed25519 AAAA...) nor a SHA256 "
        "fingerprint; copy the host's /etc/ssh/ssh_host_ed25519_key.pub or its `ssh-keygen -lf` output."
    )


def _hashed_name_matches(pattern: str, name: str) -> bool:
    """Match a hashed known_hosts name (``|1|salt|hash``, HMAC-SHA1 of the name keyed by the salt)."""
    try:
        _, kind, salt, digest = pattern.split("|")
        if kind != "1":
            return False
        mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(mac, base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def pin_host_key(known_hosts: Path, host: str, port: int, key_line: str, *, alias: str | None = None) -> None:
    """Pin ``key_line`` as the only key of ``[host]:port`` (or ``alias``) in ``known_hosts``, atomically.

    Other hosts' lines are kept; the name is removed from lines that list it (plain or hashed), and
    one new line is appended.

    Raises:
        HostKeyError: ``key_line`` is not an OpenSSH public key line.
        ProfileError: The file cannot be written.
    """
    spec = parse_host_key(key_line)
    if spec.public_key_line is None:
        raise HostKeyError(
            "pinning needs the public key line (ssh-ed25519 AAAA...), not just its fingerprint."
        )
    name = alias or known_hosts_entry(host, port)
    kept: list[str] = []
    try:
        old = known_hosts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        old = []
    except OSError as exc:
        raise ProfileError(
            f"cannot read {known_hosts}: {exc.strerror or exc}; check its permissions."
        ) from exc
    for line in old:
        fields = line.split()
        if not fields or fields[0].startswith(("#", "@")):
            kept.append(line)
            continue
        names = [n for n in fields[0].split(",") if n != name and not _hashed_name_matches(n, name)]
        if names:
            kept.append(" ".join([",".join(names), *fields[1:]]))
    kept.append(f"{name} {spec.public_key_line}")
    try:
        known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private_file(known_hosts, ("\n".join(kept) + "\n").encode("utf-8"))
    except OSError as exc:
        raise ProfileError(
            f"cannot write {known_hosts}: {exc.strerror or exc}; check the directory."
        ) from exc


def move_pin(known_hosts: Path, host: str, port: int) -> bool:
    """Make the pin of ``host`` on ``port`` its only pin in ``known_hosts``: for a host that changed port.

    A host that keeps its key but listens on a new port (the sandbox after a restart) is pinned per
    ``[host]:port``: its pins on the other port written last are renamed to the new port (the same
    keys, so no new trust), and its pins on other ports are dropped, so restarts do not pile lines
    up. A pin for ``port`` that exists already is kept as it is. Other hosts' lines, comments and
    markers stay; hashed names are left alone (their port cannot be read).

    Returns:
        True if the file changed; False if it did not (no pin of ``host`` at all, no file, or nothing
        to move).

    Raises:
        ProfileError: The file cannot be read or written.
    """
    try:
        lines = known_hosts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ProfileError(
            f"cannot read {known_hosts}: {exc.strerror or exc}; check its permissions."
        ) from exc
    name = known_hosts_entry(host, port)
    others = {n for line in lines for n in _host_names(line) if n != name and _same_host(n, host)}
    if not others:
        return False
    pinned = any(n == name or _hashed_name_matches(n, name) for line in lines for n in _host_names(line))
    # Without a pin for the new port, the pins of the port written last are renamed to it.
    moved = None if pinned else next(n for line in reversed(lines) for n in _host_names(line) if n in others)
    kept: list[str] = []
    for line in lines:
        names = _host_names(line)
        if not others & set(names):
            kept.append(line)
            continue
        renamed = [name] if moved in names else []
        names = [n for n in names if n not in others] + renamed
        if names:
            kept.append(" ".join([",".join(names), *line.split()[1:]]))
    try:
        write_private_file(known_hosts, ("\n".join(kept) + "\n").encode("utf-8"))
    except OSError as exc:
        raise ProfileError(
            f"cannot write {known_hosts}: {exc.strerror or exc}; check the directory."
        ) from exc
    return True


def _host_names(line: str) -> list[str]:
    """The host names of a known_hosts line; none for blank lines, comments and @marker lines."""
    fields = line.split()
    if not fields or fields[0].startswith(("#", "@")):
        return []
    return fields[0].split(",")


def _same_host(name: str, host: str) -> bool:
    """Whether a known_hosts name is ``host`` on some port: ``host`` (22) or ``[host]:PORT``."""
    if name == host:
        return True
    bracketed, _, port = name.rpartition(":")
    return bracketed == f"[{host}]" and port.isdigit()


__all__ = [
    "HOST_KEY_ALGORITHMS",
    "KEEPALIVE_COUNT_MAX",
    "MAX_CHANNELS",
    "HostKey",
    "HostKeySpec",
    "Remote",
    "RunResult",
    "Target",
    "connect",
    "fetch_host_key",
    "known_hosts_entry",
    "move_pin",
    "open_remote",
    "parse_host_key",
    "pin_host_key",
    "verify_host_key",
]
