"""One open SSH connection (:class:`Remote`) and how it is opened (:func:`connect`, :func:`open_remote`).

Everything mcpctl does on a remote host goes through a Remote (asyncssh). What it guarantees:

- **Host keys are always checked** against the target's own known_hosts file
  (:mod:`provision.ssh.hostkeys`); nothing is trusted on first use. ``~/.ssh/known_hosts``,
  ``~/.ssh/config`` and the ssh-agent are not consulted unless the target asks (``use_ssh_config``,
  ``use_agent``).
- **Keepalives are on** (asyncssh has them off by default): a dead peer is noticed after
  ``keepalive_interval * 3`` seconds instead of never.
- **At most 8 channels per connection** (:mod:`provision.ssh.channels`): :meth:`Remote.run`,
  :meth:`Remote.create_process` and the shared SFTP session each hold one slot while open.
- **Commands are built from quoted parts** (:func:`provision.shell.join`) and run by the remote user's
  login shell (sshd runs ``$SHELL -c LINE``), which must be POSIX-compatible (sh, dash, bash, zsh).
- **Output is the command's own** with ``clean=True`` (the default; :mod:`provision.ssh.marker`).
- **Stopped commands really stop**: the marker line also carries the command's pid (sshd makes it a
  process-group leader), so a ``run`` timeout and :meth:`Remote.kill` kill the whole group with
  ``kill`` on the host. SSH signal requests alone are not enough: sshd ignores them for root logins.
- **Errors are ours** (:mod:`provision.ssh.failures`): asyncssh and OSError failures become
  :class:`ConnectError`, :class:`HostKeyError`, :class:`RemoteError` or :class:`ProfileError`, each
  saying what to do next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncssh

from provision import shell
from provision.errors import McpctlError, RemoteError
from provision.ssh import failures
from provision.ssh.channels import ChannelSlots
from provision.ssh.hostkeys import load_known_hosts
from provision.ssh.marker import as_bytes, decode, read_marker_line, split_marker, tail, with_marker
from provision.ssh.sftp import SharedSftp
from provision.ssh.target import RunResult, Target

KEEPALIVE_COUNT_MAX = 3
CLOSE_TIMEOUT = 5.0  # seconds to wait for a closing channel or connection before giving up on it
_PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)


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
        self._slots = ChannelSlots(conn, target)
        self._sftp = SharedSftp(self._slots)
        self._watchers: set[asyncio.Task[None]] = set()
        self._pids: dict[asyncssh.SSHClientProcess[bytes], int] = {}

    @property
    def channels_in_use(self) -> int:
        """How many of the :data:`~provision.ssh.channels.MAX_CHANNELS` slots are held right now."""
        return self._slots.in_use

    def channel(self) -> AbstractAsyncContextManager[None]:
        """Hold one of the connection's channel slots (at most 8 channels at once) while inside."""
        return self._slots.slot()

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
            command, marker = with_marker(command, stderr=True)
        data = input.encode("utf-8") if isinstance(input, str) else input
        timed_out: asyncssh.TimeoutError | None = None
        async with self.channel():
            process = await self._slots.open_process(command, shown)
            try:
                with contextlib.suppress(BrokenPipeError, ConnectionError):
                    if data:  # a command that exits without reading stdin closes it under us: fine
                        process.stdin.write(data)
                    process.stdin.write_eof()
                completed = await process.wait(timeout=timeout)
            except asyncssh.TimeoutError as exc:
                timed_out = exc
            except (asyncssh.Error, OSError) as exc:
                raise failures.dropped(self.target, exc, f"running `{shown}`") from exc
            finally:
                process.close()
        if timed_out is not None:
            # Killed after giving the slot back: the kill needs a channel of its own.
            marked = split_marker(as_bytes(timed_out.stdout), marker) if clean else None
            await self._kill(process, marked[0] if marked else None, "KILL")
            raise RemoteError(
                f"`{shown}` did not finish within {timeout:g} s on {self.target.address} and was killed",
                hint="give it more time or look at what it waits for",
            )
        stdout = as_bytes(completed.stdout)
        stderr = as_bytes(completed.stderr)
        status = completed.returncode if completed.returncode is not None else 255
        if clean:
            marked = split_marker(stdout, marker)
            if marked is None:
                raise RemoteError(
                    f"the login shell of '{self.target.user}' on {self.target.address} exited "
                    f"(status {status}) before running `{shown}`; it printed: "
                    f"{tail(decode(stdout + stderr))}",
                    hint="check that user's shell and rc files",
                )
            stdout = marked[1]
            stderr = (split_marker(stderr, marker) or (None, b""))[1]
        result = RunResult(argv, status, decode(stdout), decode(stderr))
        if check and status != 0:
            raise RemoteError(
                f"`{shown}` failed on {self.target.address} with exit status {status}: "
                f"{shell.mask(tail(result.stderr), secrets)}"
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
        command = shown = shell.join(argv)
        marker = b""
        if clean:
            command, marker = with_marker(command, stderr=False)
        await self._slots.acquire()
        try:
            process = await self._slots.open_process(command, shown, **kwargs)
        except BaseException:
            self._slots.release()
            raise
        watcher = asyncio.get_running_loop().create_task(self._release_when_closed(process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        if clean:
            try:
                line = await asyncio.wait_for(read_marker_line(process, marker), start_timeout)
            except asyncio.IncompleteReadError as exc:
                process.close()
                raise RemoteError(
                    f"the login shell of '{self.target.user}' on {self.target.address} exited before "
                    f"running `{shown}`; it printed: {tail(decode(exc.partial))}",
                    hint="check that user's shell and rc files",
                ) from None
            except asyncio.TimeoutError:
                process.close()
                raise RemoteError(
                    f"`{shown}` did not start within {start_timeout:g} s on {self.target.address}",
                    hint="check the user's rc files for something slow or waiting for input",
                ) from None
            except (asyncssh.Error, OSError) as exc:
                process.close()
                raise failures.dropped(self.target, exc, f"starting `{shown}`") from exc
            marked = split_marker(line, marker)
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

    async def _release_when_closed(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        try:
            await process.wait_closed()
        finally:
            self._pids.pop(process, None)
            self._slots.release()

    def sftp(self) -> AbstractAsyncContextManager[asyncssh.SFTPClient]:
        """Use the connection's one SFTP session (opened on first use, closed with the connection).

        An :class:`asyncssh.SFTPError` escaping the block becomes a RemoteError; catch it inside the
        block to handle it (e.g. ``SFTPNoSuchFile`` for "not there yet").

        Raises:
            RemoteError: The host offers no SFTP, or an SFTP operation in the block failed.
            ConnectError: The connection dropped.
        """
        return self._sftp.session()

    async def aclose(self) -> None:
        """Close the SFTP session and the connection (bounded wait)."""
        await self._sftp.close(CLOSE_TIMEOUT)
        self.conn.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self.conn.wait_closed(), CLOSE_TIMEOUT)
        for watcher in list(self._watchers):
            watcher.cancel()


# ---------------------------------------------------------------------------------------- connecting


class _RecordingClient(asyncssh.SSHClient):
    """Remembers the host key a server offered when it is not in known_hosts (for the error message).

    asyncssh calls ``validate_host_public_key`` only for keys known_hosts does not trust; returning
    False keeps such keys rejected.
    """

    def __init__(self) -> None:
        super().__init__()
        self.offered: failures.Offered | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = (host, addr, port, key)
        return False


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


async def open_remote(target: Target) -> Remote:
    """Connect and authenticate; the caller must ``await remote.aclose()`` (prefer :func:`connect`).

    Raises:
        HostKeyError: The host key is not pinned, changed, or the known_hosts file is unreadable.
        ConnectError: The host cannot be reached (refused, unresolvable, unreachable, timeout) or
            refused the login.
        KeyNeedsPassphrase: The identity file is encrypted and no agent is used.
        ProfileError: The identity file is missing, unreadable, or not a private key.
    """
    known = load_known_hosts(target)
    if target.identity_file is not None and not os.access(target.identity_file, os.R_OK):
        raise failures.identity_missing(target)
    client = _RecordingClient()
    options = _connect_options(target, known, client)
    try:
        conn = await asyncssh.connect(target.host, target.port, **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise failures.host_key_refused(target, known, client.offered, exc.reason) from exc
    except asyncssh.PermissionDenied as exc:
        raise failures.login_refused(target) from exc
    except asyncssh.KeyImportError as exc:
        raise failures.identity_unusable(target, exc) from exc
    except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
        raise failures.unreachable(exc, target.host, target.port, target.connect_timeout, target.ref) from exc
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
        raise failures.dropped(target, exc, "working on the host") from exc
    except asyncssh.ChannelOpenError as exc:
        if remote.conn.is_closed():
            raise failures.dropped(target, exc, "working on the host") from exc
        raise
    finally:
        await remote.aclose()


__all__ = ["CLOSE_TIMEOUT", "KEEPALIVE_COUNT_MAX", "Remote", "connect", "open_remote"]
