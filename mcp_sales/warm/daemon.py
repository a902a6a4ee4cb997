"""``mcp-sales warm``: the warm server, one per host user and project directory.

It takes the directory's lock (a second one exits at once), notes the code it runs (the launch
command's fingerprint), imports everything a session needs, then listens on ``DIR/sock`` (the
directory 0700, the socket 0600, and every peer's uid checked with SO_PEERCRED). Each ``session``
request carries the launch command's stdin, stdout and stderr; a child is forked for it (see
:mod:`mcp_sales.warm.session`) and its exit status goes back on the request's connection. A launch
command that goes away (killed) takes its session with it: the session's process group gets SIGTERM,
then SIGKILL. A request from older or newer code than ours is answered ``stale``: the server retires
(stops listening, lets go of the lock so a fresh one can start, finishes its running sessions, exits).
``stop`` and SIGTERM/SIGHUP retire it the same way; with no session for ``--idle-timeout`` seconds
it exits.

Single-threaded on purpose: a thread would be forked in a broken state into every child.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from mcp_sales.warm import attach
from mcp_sales.warm.process import preload, rss_kib, set_process_name, thread_count
from mcp_sales.warm.session import become_session, encode_for_standby, parse_request, wait_for_session

log = logging.getLogger("mcp_sales.warm")

DEFAULT_IDLE_S = 900.0
KILL_GRACE_S = 5.0
REQUEST_TIMEOUT_S = 5.0
MAX_FDS = 3
# A session's hand-off forks the next session's process this long after it, not during its start.
STANDBY_DELAY_S = 0.1


@dataclass
class Running:
    """One session: its process and the launch command's connection."""

    pid: int
    conn: socket.socket
    kill_at: float | None = None  # when to SIGKILL a group that got SIGTERM
    buffer: bytes = b""


@dataclass
class Standby:
    """The next session's process, forked ahead of time, and the channel its request goes on."""

    pid: int
    channel: socket.socket


@dataclass
class WarmServer:
    directory: str
    idle_timeout: float
    fingerprint: str
    listener: socket.socket | None = None
    lock_fd: int | None = None
    sessions: dict[int, Running] = field(default_factory=dict)
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    wake_r: int = -1
    wake_w: int = -1
    retiring: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.time)
    served: int = 0
    standby: Standby | None = None
    standby_at: float | None = None  # when to fork the next standby

    # ------------------------------------------------------------------------------- start, stop

    def take_lock(self) -> bool:
        """Whether this process is now the directory's only warm server."""
        fd = os.open(os.path.join(self.directory, attach.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.lock_fd = fd
        return True

    def listen(self) -> None:
        path = os.path.join(self.directory, attach.SOCKET_NAME)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead predecessor's: we hold the lock, so nobody else listens there
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window in which others could connect
        try:
            listener.bind(path)
        finally:
            os.umask(old)
        listener.listen(64)
        listener.setblocking(False)
        self.listener = listener
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # the wakeup fd does the work
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: retiring", signal.Signals(signum).name)
        self.retire()

    def retire(self) -> None:
        """Stop taking sessions and let a successor start; running sessions go on to their end."""
        if self.retiring:
            return
        self.retiring = True
        self._drop_standby()
        if self.listener is not None:
            self.selector.unregister(self.listener)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, attach.SOCKET_NAME))  # before the lock goes
            self.listener.close()
            self.listener = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def release_in_child(self) -> None:
        """In a forked child: close every descriptor of the server (not the session's)."""
        if self.listener is not None:
            self.listener.close()
        for running in self.sessions.values():
            running.conn.close()
        if self.standby is not None:
            self.standby.channel.close()
        self.selector.close()
        for fd in (self.wake_r, self.wake_w, self.lock_fd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # ------------------------------------------------------------------------------------ the loop

    def _prepare_standby(self) -> None:
        """Fork the next session's process now, while no session is starting."""
        self.standby_at = None
        if self.standby is not None or self.retiring or thread_count() != 1:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            wait_for_session(theirs, self.release_in_child)
        theirs.close()
        self.standby = Standby(pid, ours)

    def _drop_standby(self) -> None:
        """Let the standby go: its channel's end of file ends it."""
        self.standby_at = None
        if self.standby is not None:
            self.standby.channel.close()
            self.standby = None

    def run(self) -> None:
        self.standby_at = time.monotonic()
        while True:
            now = time.monotonic()
            if not self.sessions and (self.retiring or now - self.idle_since >= self.idle_timeout):
                log.info("%s; exiting", "retired" if self.retiring else "idle")
                self._drop_standby()
                return
            if self.standby_at is not None and now >= self.standby_at:
                self._prepare_standby()
            timeout = self._next_deadline(now) - now
            for key, _mask in self.selector.select(max(timeout, 0.0)):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                    self._reap()
                else:
                    self._from_launcher(key.data)
            self._reap()
            self._escalate(time.monotonic())

    def _next_deadline(self, now: float) -> float:
        deadlines = [r.kill_at for r in self.sessions.values() if r.kill_at is not None]
        if not self.sessions:
            deadlines.append(self.idle_since + self.idle_timeout)
        if self.standby_at is not None:
            deadlines.append(self.standby_at)
        return min(deadlines, default=now + 60.0)

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            self._handle(conn)
        except (OSError, ValueError) as exc:
            log.warning("dropped a request: %s", exc)
            conn.close()

    def _handle(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        peer_pid, peer_uid, _gid = struct.unpack("3i", creds)
        if peer_uid != os.getuid():
            log.warning(
                "refused a connection from uid %d (pid %d): not this server's user", peer_uid, peer_pid
            )
            conn.close()
            return
        conn.setblocking(True)
        conn.settimeout(REQUEST_TIMEOUT_S)
        fields, fds = _read_request(conn)
        if len(fields) < 2 or fields[0] != attach.PROTOCOL:
            _close_all(fds)
            conn.sendall(b"error unknown protocol\n")
            conn.close()
            return
        op = fields[1]
        if op == "session":
            self._session(conn, fields[2:], fds)
            return
        _close_all(fds)
        if op == "status":
            self._reap()  # a session that just ended is not counted as running
            state = "retiring" if self.retiring else "ready"
            conn.sendall(
                f"{state} pid {os.getpid()} sessions {len(self.sessions)} served {self.served} "
                f"up {time.time() - self.started:.0f} rss_kib {rss_kib() or 0} "
                f"code {attach.short_digest(self.fingerprint)}\n".encode()
            )
        elif op == "stop":
            self.retire()
            conn.sendall(b"stopping\n")
        else:
            conn.sendall(b"error unknown request\n")
        conn.close()

    def _session(self, conn: socket.socket, fields: list[str], fds: list[int]) -> None:
        if self.retiring or not fields or fields[0] != self.fingerprint:
            _close_all(fds)
            if not self.retiring:
                log.info("a session runs other code than this server: retiring for a fresh one")
                self.retire()  # before answering: the launcher starts the successor at once
            conn.sendall(b"stale\n")
            conn.close()
            return
        try:
            request = parse_request(fields[1:], fds)
        except (ValueError, IndexError) as exc:
            _close_all(fds)
            conn.sendall(f"error {exc}\n".encode())
            conn.close()
            return
        threads = thread_count()
        if threads != 1:  # a thread would be forked broken into the child: never fork then
            log.error("%d threads are running: serving no more sessions", threads)
            _close_all(fds)
            self.retire()
            conn.sendall(b"stale\n")
            conn.close()
            return
        pid = self._hand_to_standby(fields[1:], fds)
        if pid is None:
            pid = os.fork()
            if pid == 0:
                become_session(request, self.release_in_child)
        _close_all(fds)
        self.standby_at = time.monotonic() + STANDBY_DELAY_S
        conn.setblocking(False)
        self.sessions[pid] = Running(pid, conn)
        self.selector.register(conn, selectors.EVENT_READ, pid)
        self.served += 1
        conn.send(f"ok {pid}\n".encode())
        log.info("session %d started (%d running)", pid, len(self.sessions))

    def _hand_to_standby(self, fields: list[str], fds: list[int]) -> int | None:
        """The standby's pid once it has the session, or None (no standby, or it is gone)."""
        standby, self.standby = self.standby, None
        if standby is None:
            return None
        try:
            socket.send_fds(standby.channel, [encode_for_standby(fields)], fds)
        except OSError:
            standby.channel.close()
            return None
        standby.channel.close()
        return standby.pid

    def _from_launcher(self, pid: int) -> None:
        running = self.sessions.get(pid)
        if running is None:
            return
        try:
            chunk = running.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            # The launch command went away without its session ending: the session goes too.
            log.info("session %d: its launch command is gone; stopping it", pid)
            self.selector.unregister(running.conn)
            self._signal(running, signal.SIGTERM)
            running.kill_at = time.monotonic() + KILL_GRACE_S
            return
        running.buffer += chunk
        while b"\n" in running.buffer:
            line, _, running.buffer = running.buffer.partition(b"\n")
            word, _, value = line.decode("ascii", "replace").partition(" ")
            if word == "kill" and value.isdigit() and int(value) in _RELAYABLE:
                self._signal(running, int(value))

    def _signal(self, running: Running, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signum)  # the session leads its own group (setsid)
        if signum != signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.pid, signal.SIGCONT)

    def _escalate(self, now: float) -> None:
        for running in list(self.sessions.values()):
            if running.kill_at is not None and now >= running.kill_at:
                log.info("session %d ignored SIGTERM; sending SIGKILL", running.pid)
                self._signal(running, signal.SIGKILL)
                running.kill_at = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.standby is not None and pid == self.standby.pid:
                self._drop_standby()  # it died waiting: fork another one later
                self.standby_at = time.monotonic() + STANDBY_DELAY_S
            running = self.sessions.pop(pid, None)
            if running is None:
                continue
            if os.WIFSIGNALED(status):
                answer = f"signal {os.WTERMSIG(status)}\n"
            else:
                answer = f"exit {os.waitstatus_to_exitcode(status)}\n"
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.selector.unregister(running.conn)
            with contextlib.suppress(OSError):
                running.conn.setblocking(True)
                running.conn.settimeout(1.0)
                running.conn.sendall(answer.encode())
            running.conn.close()
            log.info("session %d ended (%s)", pid, answer.strip())
            if not self.sessions:
                self.idle_since = time.monotonic()


_RELAYABLE = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT})


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_request(conn: socket.socket) -> tuple[list[str], list[int]]:
    """One request: its fields and the descriptors that came with it.

    Raises:
        ValueError: not a request (too long, cut short).
        OSError: the connection failed or timed out.
    """
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, MAX_FDS)
    try:
        while b"\n" not in data[:16]:
            if len(data) >= 16:
                raise ValueError("no length line")
            more = conn.recv(65536)
            if not more:
                raise ValueError("cut short")
            data += more
        head, _, body = data.partition(b"\n")
        length = int(head)
        if length > attach.REQUEST_MAX:
            raise ValueError("too long")
        while len(body) < length:
            more = conn.recv(65536)
            if not more:
                raise ValueError("cut short")
            body += more
    except BaseException:
        _close_all(fds)
        raise
    return body.decode("utf-8", "surrogateescape").split("\0"), fds


def run(args: argparse.Namespace) -> int:
    """``mcp-sales warm``: serve sessions until idle or retired; 0 also when another one runs."""
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        force=True,
    )
    directory = args.dir or attach.runtime_dir()
    try:
        attach.private_dir(directory)
    except attach.Refused as exc:
        log.error("%s", exc)
        return 1
    server = WarmServer(directory, args.idle_timeout, attach.fingerprint())
    if not server.take_lock():
        log.info("another warm server runs in %s", directory)
        return 0
    set_process_name("mcp-sales-warm")
    started = time.perf_counter()
    loaded = preload(prophet=not args.no_prophet)
    if thread_count() != 1:
        log.error("%d threads run after the imports: a fork would break them; not serving", thread_count())
        return 1
    server.listen()
    log.info(
        "warm server %d ready in %s after %.2f s (imported %s; %d MiB); idle exit after %g s",
        os.getpid(),
        directory,
        time.perf_counter() - started,
        ", ".join(loaded),
        (rss_kib() or 0) // 1024,
        args.idle_timeout,
    )
    try:
        server.run()
    finally:
        server.retire()
    # Skip the interpreter's teardown: nothing is left to flush, and extension modules complain
    # about objects the frozen generation still holds.
    logging.shutdown()
    os._exit(0)
