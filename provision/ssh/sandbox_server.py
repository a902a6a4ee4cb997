"""The sandbox SSH server process: an asyncssh server on 127.0.0.1 that behaves like a real host.

Started detached by :func:`provision.ssh.sandbox.up` as
``python -m provision.ssh.sandbox_server --state DIR``.
It accepts one login (the current OS user with the generated client key), runs every exec request as
``/bin/sh -c COMMAND`` in a new session, serves SFTP over the whole file system, and kills a command's
process group when its channel or connection goes away, so nothing is left running behind a dropped
client. Shell, pty and forwarding requests are refused.

Startup is reported on ``--ready-fd``: one line, ``ok PORT`` once listening or ``error MESSAGE``.
With ``--fallback`` a taken ``--port`` is not an error: the server listens on a free port instead (a
restarted sandbox goes back to its last port when it can, and never fails because it cannot).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import posixpath
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

#: The software version in the SSH banner (``SSH-2.0-mcpctl_sandbox``); lets a probe tell our server
#: from anything else that happens to listen on a recorded port.
SERVER_VERSION = "mcpctl_sandbox"
BANNER_PREFIX = b"SSH-2.0-" + SERVER_VERSION.encode()

HOST = "127.0.0.1"
HOST_KEY_FILE = "host_key"
CLIENT_KEY_FILE = "client_key"

#: How long a command's process group gets between SIGTERM and SIGKILL.
KILL_GRACE = 2.0
#: Server-side keepalive, so a client that vanished without closing its TCP connection is noticed
#: (and its commands killed) instead of holding processes forever.
KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_COUNT_MAX = 3

_CHUNK = 64 * 1024
_POLL = 0.05
_PATH = "/usr/local/bin:/usr/bin:/bin"
_SHELL_REFUSED = b"this sandbox runs commands only; pass a command to run (ssh HOST COMMAND)\n"
_SUBSYSTEM_REFUSED = b"this sandbox offers only the sftp subsystem\n"
# What binding a port someone else holds fails with (EACCES: a port below 1024 for a non-root user).
_PORT_TAKEN = (errno.EADDRINUSE, errno.EACCES)

log = logging.getLogger("mcpctl.sandbox")


@dataclass(frozen=True)
class _Account:
    """The one account the sandbox serves: who may log in and where their commands run."""

    user: str
    home: str
    lang: str

    @classmethod
    def current(cls) -> _Account:
        import pwd  # POSIX only, like the whole server; imported here so the constants import anywhere

        entry = pwd.getpwuid(os.getuid())
        # The password database, not $USER/$HOME: the login name must be the real OS user.
        return cls(user=entry.pw_name, home=entry.pw_dir, lang=os.environ.get("LANG", "C.UTF-8"))

    def command_env(self) -> dict[str, str]:
        """A minimal, predictable environment, like sshd gives a non-login command."""
        return {
            "PATH": _PATH,
            "HOME": self.home,
            "USER": self.user,
            "LOGNAME": self.user,
            "SHELL": "/bin/sh",
            "LANG": self.lang,
        }


# --------------------------------------------------------------------------------------------------
# process groups


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group.

    Zombies count as gone: an orphan's zombie may linger until init reaps it (some container inits
    never do), and it can no longer hold anything open.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces and parens): state ppid pgrp ...
        fields = raw[raw.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


async def _terminate_group(pgid: int, child: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the whole group, SIGKILL whatever is left after ``grace`` seconds, reap the child."""
    loop = asyncio.get_running_loop()
    _killpg(pgid, signal.SIGTERM)
    # A stopped process would not act on SIGTERM until continued.
    _killpg(pgid, signal.SIGCONT)
    deadline = loop.time() + grace
    # Grandchildren are not our children, so there is nothing to wait on: poll the group, bounded.
    for _ in range(int(grace / _POLL) + 1):
        if not _group_alive(pgid) or loop.time() >= deadline:
            break
        await asyncio.sleep(_POLL)
    if _group_alive(pgid):
        log.info("process group %d ignored SIGTERM; sending SIGKILL", pgid)
        _killpg(pgid, signal.SIGKILL)
    await child.wait()


# --------------------------------------------------------------------------------------------------
# exec


def _describe(command: str) -> str:
    """The program a command starts, for the log; arguments may hold secrets, so they stay out."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return words[0] if words else "''"


class _Exec:
    """One exec request: a ``/bin/sh -c`` child bridged to an SSH channel, bytes in, bytes out."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process) -> None:
        self._process = process
        self._child = child
        self._pgid = child.pid  # start_new_session=True: the child leads its own group

    async def run(self) -> None:
        closed = asyncio.ensure_future(self._process.channel.wait_closed())
        stdin_task = asyncio.ensure_future(self._pump_stdin())
        finished = asyncio.ensure_future(self._finish())
        completed = False
        try:
            await asyncio.wait({closed, finished}, return_when=asyncio.FIRST_COMPLETED)
            if finished.done():
                self._report(finished.result())
                # Finished like on a real host: whatever it detached (output redirected, in the
                # background) is left running, as sshd would.
                completed = True
        finally:
            if not completed:
                # The client went away while the command still runs (or bridging failed): like a
                # hung-up terminal, nothing the command started may outlive the channel.
                log.info("channel closed; terminating process group %d", self._pgid)
                await _terminate_group(self._pgid, self._child, KILL_GRACE)
            for task in (closed, stdin_task, finished):
                task.cancel()
            await asyncio.gather(closed, stdin_task, finished, return_exceptions=True)

    async def _finish(self) -> int:
        """Forward stdout/stderr until both reach EOF and the child has exited; return its status."""
        assert self._child.stdout is not None and self._child.stderr is not None
        await asyncio.gather(
            self._pump_out(self._child.stdout, self._process.stdout),
            self._pump_out(self._child.stderr, self._process.stderr),
        )
        return await self._child.wait()

    def _report(self, returncode: int) -> None:
        if returncode >= 0:
            self._process.exit(returncode)
            return
        try:
            name = signal.Signals(-returncode).name.removeprefix("SIG")
        except ValueError:
            self._process.exit(128 - returncode)
            return
        self._process.exit_with_signal(name)

    async def _pump_stdin(self) -> None:
        stdin = self._child.stdin
        assert stdin is not None
        reader = self._process.stdin
        writable = True
        try:
            while True:
                try:
                    data = await reader.read(_CHUNK)
                except asyncssh.SignalReceived as sig:
                    self._forward_signal(sig.signal)
                    continue
                except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                    continue  # meaningless without a terminal
                except (asyncssh.Error, OSError):
                    return  # connection lost; run() handles the teardown
                if not data:
                    return  # the client's EOF: close the child's stdin below
                if not writable:
                    continue  # the child stopped reading; keep draining so the client never blocks
                try:
                    stdin.write(data)
                    await stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    writable = False
        finally:
            stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await stdin.wait_closed()

    @staticmethod
    async def _pump_out(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        open_ = True
        while True:
            data = await source.read(_CHUNK)
            if not data:
                return
            if not open_:
                continue  # channel gone: drain the pipe so the child is not blocked while it is killed
            try:
                sink.write(data)
                await sink.drain()
            except (BrokenPipeError, ConnectionError, asyncssh.Error):
                open_ = False

    def _forward_signal(self, name: str) -> None:
        sig = getattr(signal, f"SIG{name}", None)
        if isinstance(sig, signal.Signals):
            # Like OpenSSH: a signal request goes to the whole process group of the command.
            _killpg(self._pgid, sig)


class _Handler:
    """The process factory: one call per session channel that is not SFTP."""

    def __init__(self, account: _Account) -> None:
        self._account = account
        self.running: set[asyncio.Task[object]] = set()

    async def __call__(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        try:
            await self._serve(process)
        except Exception:
            # A bug here must cost one channel, not the whole server.
            log.exception("session failed")
            with contextlib.suppress(Exception):
                process.exit(255)
        finally:
            if task is not None:
                self.running.discard(task)

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command
        if command is None:
            refusal = _SHELL_REFUSED if process.subsystem is None else _SUBSYSTEM_REFUSED
            process.stderr.write(refusal)
            process.exit(1)
            return
        try:
            child = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._account.home,
                env=self._account.command_env(),
                # Its own session and process group: one killpg reaches everything it starts.
                start_new_session=True,
            )
        except OSError as exc:
            process.stderr.write(f"sandbox: cannot start /bin/sh: {exc}\n".encode())
            process.exit(127)
            return
        log.info("exec pid=%d %s", child.pid, _describe(command))
        await _Exec(process, child).run()
        log.info("exec pid=%d done (status %s)", child.pid, child.returncode)


# --------------------------------------------------------------------------------------------------
# SFTP and authentication


class _SFTPServer(asyncssh.SFTPServer):
    """SFTP over the whole file system, relative paths resolved against HOME like OpenSSH's."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], home: bytes) -> None:
        super().__init__(chan)
        self._home = home

    def map_path(self, path: bytes) -> bytes:
        if path.startswith(b"/"):
            return path
        return posixpath.join(self._home, path) if path else self._home


class _Server(asyncssh.SSHServer):
    """Key-only authentication for one user and one key; tracks connections for shutdown."""

    def __init__(
        self, account: _Account, client_key: asyncssh.SSHKey, conns: set[asyncssh.SSHServerConnection]
    ):
        self._account = account
        self._client_key = client_key
        self._conns = conns
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always require authentication

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if username != self._account.user:
            log.warning("login as %r refused: the sandbox serves only %r", username, self._account.user)
            return False
        if key.public_data != self._client_key.public_data:
            log.warning("key %s refused: only the sandbox client key is accepted", key.get_fingerprint())
            return False
        return True


# --------------------------------------------------------------------------------------------------
# main


def _report_ready(fd: int | None, line: str) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, (line + "\n").encode())
    with contextlib.suppress(OSError):
        os.close(fd)


async def _bind(
    listen: Callable[[int], Awaitable[asyncssh.SSHAcceptor]], port: int, *, fallback: bool
) -> asyncssh.SSHAcceptor:
    """Listen on ``port``; with ``fallback``, on a free port when that one is taken.

    Raises:
        OSError: The port cannot be bound (and ``fallback`` does not apply).
    """
    try:
        return await listen(port)
    except OSError as exc:
        if not (fallback and port and exc.errno in _PORT_TAKEN):
            raise
        log.info("port %d is taken (%s); listening on a free port instead", port, exc.strerror or exc)
    return await listen(0)


async def _serve(state: Path, port: int, ready_fd: int | None, *, fallback: bool = False) -> int:
    account = _Account.current()
    try:
        host_key = asyncssh.read_private_key(state / HOST_KEY_FILE)
        client_key = asyncssh.read_public_key(state / f"{CLIENT_KEY_FILE}.pub")
    except (OSError, asyncssh.KeyImportError) as exc:
        _report_ready(ready_fd, f"error cannot read the sandbox keys in {state}: {exc}")
        return 2

    conns: set[asyncssh.SSHServerConnection] = set()
    handler = _Handler(account)
    home = os.fsencode(account.home)

    def sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        return _SFTPServer(chan, home)

    async def listen(on: int) -> asyncssh.SSHAcceptor:
        return await asyncssh.create_server(
            lambda: _Server(account, client_key, conns),
            host=HOST,  # loopback only: this host must never be reachable from the network
            port=on,
            server_host_keys=[host_key],
            server_version=SERVER_VERSION,
            process_factory=handler,
            sftp_factory=sftp_factory,
            encoding=None,  # bytes end to end: commands may stream binary data
            allow_scp=False,
            allow_pty=False,
            agent_forwarding=False,
            x11_forwarding=False,
            password_auth=False,
            kbdint_auth=False,
            gss_host=None,
            keepalive_interval=KEEPALIVE_INTERVAL,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
        )

    try:
        acceptor = await _bind(listen, port, fallback=fallback)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _report_ready(ready_fd, f"error cannot listen on {HOST}:{port} ({reason}); pick another port or none")
        return 3

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A handler rather than SIG_IGN: an ignored SIGHUP would be inherited by every command.
    loop.add_signal_handler(signal.SIGHUP, lambda: None)

    bound = acceptor.get_port()
    log.info("listening on %s:%d as %s (pid %d)", HOST, bound, account.user, os.getpid())
    _report_ready(ready_fd, f"ok {bound}")

    await stop.wait()
    log.info("stopping")
    acceptor.close()
    for conn in list(conns):
        conn.close()  # each running command sees its channel close and has its group killed
    if handler.running:
        await asyncio.wait(set(handler.running), timeout=KILL_GRACE + 2.0)
    await acceptor.wait_closed()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox server until SIGTERM; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m provision.ssh.sandbox_server", description=__doc__)
    parser.add_argument("--state", required=True, type=Path, help="directory holding the keys")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--ready-fd", type=int, default=None, help="fd to report 'ok PORT' or 'error ...'")
    parser.add_argument(
        "--fallback", action="store_true", help="if --port is taken, listen on a free port instead"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    return asyncio.run(_serve(args.state.resolve(), args.port, args.ready_fd, fallback=args.fallback))


if __name__ == "__main__":
    sys.exit(main())
