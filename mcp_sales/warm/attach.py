"""The launch command: hand this session to the warm server, or start the server cold in place.

Run as ``python -I -S .../mcp_sales/warm/attach.py [SERVER ARGS]`` (what the client entry and
``mcpctl connect`` start on the host). It imports only builtin modules, so it is running within a
few milliseconds. It passes its stdin, stdout and stderr to the warm server of this project and host
user (``mcp-sales warm``) over a Unix socket, which forks a process that serves the session on them
as ``mcp-sales serve`` would. This process stays as the session's stand-in: it relays SIGTERM,
SIGHUP and SIGINT to that process and exits with its status, so sshd and the proxy's process-group
cleanup see one process that ends when the server ends.

When no warm server answers, or it runs code other than what is on disk now (a fingerprint of the
package files' sizes and mtimes and of the installed distributions), this process becomes the
server (``exec python -m mcp_sales``, exactly as before) after starting a fresh warm server in the
background for the next session, fully detached from this session's descriptors.

Also ``--status`` (one line about the warm server), ``--stop`` (ask it to exit once its sessions
end) and ``--restart`` (stop a running one and start a fresh one), used by mcpctl after a sync.

Environment: ``MCP_SALES_WARM=0`` always starts cold; ``MCP_SALES_WARM_DIR`` is the socket's
directory; ``MCP_SALES_WARM_IDLE`` the idle seconds a new warm server waits before exiting.

Only builtin modules on purpose: importing ``socket``, ``json`` or ``signal`` would triple the
time to the first byte. The protocol is therefore plain: a request is an ASCII length line and NUL
separated fields, with the three descriptors attached (SCM_RIGHTS) to its first byte; answers are
lines: ``ok PID``, ``stale``, ``exit CODE`` / ``signal N``, ``status ...``, ``stopping``.
"""

from __future__ import annotations

import _socket
import os
import sys
import time

TYPE_CHECKING = False  # not `from typing import TYPE_CHECKING`: typing imports re, enum, functools...
if TYPE_CHECKING:  # the same functions; the builtin module skips signal.py's enum conversions
    import signal as _signal
else:
    import _signal

PROTOCOL = "mcp-sales-warm/1"
SOCKET_NAME = "sock"
LOCK_NAME = "lock"
LOG_NAME = "daemon.log"
LAST_NAME = "last-session"
DIR_ENV = "MCP_SALES_WARM_DIR"
SWITCH_ENV = "MCP_SALES_WARM"
IDLE_ENV = "MCP_SALES_WARM_IDLE"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, NUL included
REQUEST_MAX = 1 << 20
RELAYED = (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT)
COLD_ONLY = ("check", "sample", "warm", "-h", "--help")  # not a stdio session: nothing to hand over
LOG_KEEP_BYTES = 1 << 20


class Refused(Exception):
    """The warm path cannot be used; the message says why (shown in the last-session record)."""


# --------------------------------------------------------------------------------------- locations


def project_root() -> str:
    """The project directory: the parent of the ``mcp_sales`` package this file belongs to."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def short_digest(text: str) -> str:
    """A short stable digest of ``text`` without hashlib (whose import costs milliseconds)."""
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8", "surrogateescape"):
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF  # FNV-1a, 64 bits
    return f"{value:016x}"


def runtime_dir(root: str | None = None) -> str:
    """The socket's directory for this host user and project: ``ROOT/.mcpctl/warm-UID``.

    When that path is too long for a socket address (108 bytes), ``/tmp/mcp-sales-UID/DIGEST``;
    ``$MCP_SALES_WARM_DIR`` overrides both.
    """
    configured = os.environ.get(DIR_ENV, "")
    if configured:
        return os.path.abspath(configured)
    root = root or project_root()
    uid = os.getuid()
    preferred = os.path.join(root, ".mcpctl", f"warm-{uid}")
    if len(os.fsencode(os.path.join(preferred, SOCKET_NAME))) <= SUN_PATH_MAX:
        return preferred
    # Safe in /tmp: private_dir() refuses a directory that is not ours or is open to others.
    return os.path.join("/tmp", f"mcp-sales-{uid}", short_digest(root))  # noqa: S108


def private_dir(path: str) -> str:
    """Create ``path`` (and missing parents) and make sure only this user can enter it.

    Raises:
        Refused: it is not a directory we own, or it is reachable by others and cannot be fixed.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise Refused(f"cannot create {path}: {exc.strerror}") from None
    if (info.st_mode & 0o170000) != 0o040000 or info.st_uid != os.getuid():
        raise Refused(f"{path} is not a directory of this user")
    parent = os.lstat(os.path.dirname(path))
    if parent.st_uid not in (os.getuid(), 0) or (parent.st_mode & 0o1002) == 0o002:
        # Someone else could rename our directory away and put theirs in its place.
        raise Refused(f"{os.path.dirname(path)} belongs to another user or is open to everyone")
    if info.st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            raise Refused(f"{path} is open to others and cannot be closed: {exc.strerror}") from None
    return path


def site_packages() -> str:
    """The environment's site-packages, found from the interpreter's path.

    Not from ``sys.prefix``: under ``-S`` it stays at the base installation (site.py is what moves it
    to a virtual environment).
    """
    env = os.path.dirname(os.path.dirname(sys.executable))
    if not os.path.exists(os.path.join(env, "pyvenv.cfg")):
        env = sys.prefix
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return os.path.join(env, "lib", version, "site-packages")


def fingerprint(root: str | None = None) -> str:
    """What the server would run: size and mtime of every package source, and the installed dists.

    Cheap (one directory walk of the package, one listing of site-packages); a sync that changes
    code, or an install that changes a dependency, changes it; a data change does not.
    """
    root = root or project_root()
    package = os.path.join(root, "mcp_sales")
    parts: list[str] = [sys.version]
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                parts.append(f"{os.path.relpath(path, root)}:{info.st_size}:{info.st_mtime_ns}")
    for extra in (os.path.join(root, "pyproject.toml"), os.path.join(root, "uv.lock")):
        try:
            info = os.stat(extra)
            parts.append(f"{os.path.basename(extra)}:{info.st_size}:{info.st_mtime_ns}")
        except OSError:
            parts.append(f"{os.path.basename(extra)}:-")
    try:
        # Distribution metadata directories carry the version in their name: an upgrade renames one.
        dists = sorted(n for n in os.listdir(site_packages()) if n.endswith((".dist-info", ".pth")))
    except OSError:
        dists = []
    parts += dists
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------ talking


def connect(directory: str) -> _socket.socket:
    """A connection to the warm server listening in ``directory``.

    Raises:
        OSError: nobody listens there.
    """
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(10.0)
        sock.connect(os.path.join(directory, SOCKET_NAME))
    except BaseException:
        sock.close()
        raise
    return sock


def encode_request(op: str, fields: list[str]) -> bytes:
    """``PROTOCOL op field...`` NUL separated, after its length in ASCII and a newline."""
    body = "\0".join([PROTOCOL, op, *fields]).encode("utf-8", "surrogateescape")
    return str(len(body)).encode() + b"\n" + body


def send_request(sock: _socket.socket, data: bytes, fds: list[int]) -> None:
    """Send ``data`` with ``fds`` attached to its first byte."""
    if fds:
        rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        data = data[sent:]
    while data:
        data = data[sock.send(data) :]


class Lines:
    """Answer lines from the warm server."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> str | None:
        """The next line without its newline, or None at the end of the connection."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")


def ask(op: str, directory: str | None = None) -> str | None:
    """Send ``op`` without descriptors; the first answer line, or None when nobody listens."""
    try:
        sock = connect(directory or runtime_dir())
    except OSError:
        return None
    try:
        send_request(sock, encode_request(op, []), [])
        return Lines(sock).next()
    except OSError:
        return None
    finally:
        sock.close()


# ---------------------------------------------------------------------------------- the cold start


def _lock_free(directory: str) -> bool:
    """Whether no warm server holds the lock (none runs nor starts); a cheap pre-check only."""
    import fcntl  # a builtin-sized extension, loaded on the cold path only

    try:
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # also releases the lock
    return True


def spawn_daemon(directory: str, root: str | None = None) -> None:
    """Start ``mcp-sales warm`` fully detached: its own session, no descriptor of ours.

    Double fork: the daemon is never our child, so a server exec'd in this process (which stops its
    children when it exits) cannot take it along, and it holds nothing of this session, so sshd can
    close the channel as soon as the session's server exits.
    """
    root = root or project_root()
    log = os.path.join(directory, LOG_NAME)
    argv = [sys.executable, "-m", "mcp_sales", "warm", "--dir", directory]
    idle = os.environ.get(IDLE_ENV, "")
    if idle:
        argv += ["--idle-timeout", idle]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            try:
                if os.stat(log).st_size > LOG_KEEP_BYTES:
                    flags |= os.O_TRUNC
            except OSError:
                pass
            err = os.open(log, flags, 0o600)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(err, 2)
            os.closerange(3, 65536)
            os.chdir(root)
            os.execv(sys.executable, argv)
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def record(directory: str | None, line: str) -> None:
    """Keep a one-line account of this session's start for ``--status`` (and ``mcpctl doctor``)."""
    if directory is None:
        return
    try:
        fd = os.open(os.path.join(directory, LAST_NAME), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{time.time():.3f} {line}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def exec_cold(args: list[str]) -> None:
    """Become the server: ``python -m mcp_sales ARGS``, exactly the pre-warm launch command."""
    os.execv(sys.executable, [sys.executable, "-m", "mcp_sales", *args])


def start_cold(args: list[str], directory: str | None, reason: str, started: float) -> None:
    """Start a warm server for the next session (unless one is starting), then exec the cold one."""
    spawned = False
    if directory is not None and os.environ.get(SWITCH_ENV, "1") != "0" and _lock_free(directory):
        try:
            spawn_daemon(directory)
            spawned = True
        except OSError:
            pass
    took = (time.perf_counter() - started) * 1000
    note = "; a warm server is starting for the next session" if spawned else ""
    record(directory, f"cold {reason}{note} ({took:.1f} ms before the cold start)")
    exec_cold(args)


# ---------------------------------------------------------------------------------- the warm start


class Session:
    """A session served by a forked warm process: relay signals to it, wait for its status."""

    def __init__(self, sock: _socket.socket, lines: Lines, pid: int) -> None:
        self.sock = sock
        self.lines = lines
        self.pid = pid
        self.orphaned = False  # the warm server died: signals go to the session's group directly

    def relay(self, signum: int, _frame: object) -> None:
        if not self.orphaned:
            try:
                self.sock.send(f"kill {signum}\n".encode())
                return
            except OSError:
                self.orphaned = True
        try:
            os.killpg(self.pid, signum)
        except OSError:  # the session has ended meanwhile
            return

    def outlive(self) -> int:
        """The warm server died under the session: stay until the session's process ends."""
        self.orphaned = True
        sys.stderr.write("mcp-sales: the warm server went away; waiting for the session to end\n")
        while True:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return 70  # its status went with the warm server
            except PermissionError:
                pass
            time.sleep(0.2)

    def wait(self) -> int:
        """The session's exit status as a shell would report it (128 + N for signal N)."""
        self.sock.settimeout(None)
        for signum in RELAYED:
            _signal.signal(signum, self.relay)
        while True:
            try:
                line = self.lines.next()
            except OSError:
                line = None
            if line is None:
                return self.outlive()
            word, _, value = line.partition(" ")
            if word == "exit":
                return int(value)
            if word == "signal":
                number = int(value)
                for each in RELAYED:
                    _signal.signal(each, _signal.SIG_DFL)
                # Die the same way, so whoever waits for us sees what happened to the server.
                if number in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT, _signal.SIGKILL):
                    os.kill(os.getpid(), number)
                return 128 + number


def _release_stdio() -> None:
    """Let go of the session's stdin and stdout: only the served process holds them now.

    stderr stays: it is where a warm server that dies under the session is reported.
    """
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def attach(args: list[str], directory: str, started: float) -> int:
    """Hand the session to the warm server and wait for it to end.

    Raises:
        Refused: the warm path is not available (no server, older code, refused); nothing was
            handed over and the caller starts cold.
    """
    try:
        sock = connect(directory)
    except OSError as exc:
        raise Refused(f"no warm server ({exc.strerror or type(exc).__name__})") from None
    connected = time.perf_counter()
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        env = [f"{k}={v}" for k, v in os.environ.items()]
        request = encode_request(
            "session", [fingerprint(), os.getcwd(), str(umask), str(len(args)), *args, *env]
        )
        send_request(sock, request, [0, 1, 2])
        lines = Lines(sock)
        answer = lines.next()
    except OSError as exc:
        sock.close()
        raise Refused(f"the warm server did not answer ({exc.strerror or type(exc).__name__})") from None
    word, _, value = (answer or "").partition(" ")
    if word != "ok":
        sock.close()
        raise Refused("the warm server runs older code" if word == "stale" else f"refused: {answer}")
    forked = time.perf_counter()
    _release_stdio()
    record(
        directory,
        f"warm pid {value} (connect {1000 * (connected - started):.1f} ms, "
        f"hand-off and fork {1000 * (forked - connected):.1f} ms)",
    )
    return Session(sock, lines, int(value)).wait()


def control(command: str, directory: str) -> int:
    """``--status``, ``--stop``, ``--restart``: print one line on stdout; 0 when it did what was asked."""
    if command == "--status":
        answer = ask("status", directory)
        last = ""
        try:
            with open(os.path.join(directory, LAST_NAME), encoding="utf-8") as handle:
                last = handle.read().strip()
        except OSError:
            pass
        code = short_digest(fingerprint())
        sys.stdout.write(f"{answer or 'none'}\ndisk code {code}\nlast {last or 'none'}\n")
        return 0
    answer = ask("stop", directory)
    if command == "--stop":
        sys.stdout.write(f"{'stopping' if answer else 'none'}\n")
        return 0
    if answer is None:
        sys.stdout.write("none\n")  # --restart: nothing ran, so nothing to replace (sessions start one)
        return 0
    # --restart: the old server has let go of the lock (it finishes its sessions on its own).
    deadline = time.monotonic() + 10.0
    while not _lock_free(directory):
        if time.monotonic() > deadline:
            sys.stdout.write("busy\n")
            return 1
        time.sleep(0.02)
    spawn_daemon(directory)
    sys.stdout.write("started\n")
    return 0


def _http(argv: list[str]) -> bool:
    """Whether the arguments ask for an HTTP server: not a stdio session, nothing to hand over."""
    for index, arg in enumerate(argv):
        if arg.startswith("--transport="):
            return arg != "--transport=stdio"
        if arg == "--transport":
            return argv[index + 1 : index + 2] != ["stdio"]
    return False


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    directory: str | None = None
    try:
        directory = private_dir(runtime_dir())
    except Refused as exc:
        if argv[:1] and argv[0] in ("--status", "--stop", "--restart"):
            sys.stderr.write(f"mcp-sales: {exc}; use a directory of your own in {DIR_ENV}.\n")
            return 1
        start_cold(argv, None, str(exc), started)
    assert directory is not None
    if argv[:1] and argv[0] in ("--status", "--stop", "--restart"):
        return control(argv[0], directory)
    if (argv[:1] and argv[0] in COLD_ONLY) or _http(argv):
        exec_cold(argv)
    if os.environ.get(SWITCH_ENV, "1") == "0":
        start_cold(argv, directory, f"the warm path is off ({SWITCH_ENV}=0)", started)
    try:
        return attach(argv, directory, started)
    except Refused as exc:
        start_cold(argv, directory, str(exc), started)
    return 70  # not reached: start_cold execs


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
