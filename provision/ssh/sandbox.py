"""The local sandbox host: an SSH server on 127.0.0.1 to try mcpctl end to end without a cloud account.

``up()`` starts :mod:`provision.ssh.sandbox_server` as a detached background process, waits until it
answers with its SSH banner and records it in ``state_dir()/sandbox/sandbox.json``; ``down()`` stops
it; ``status()`` reports it. The directory also holds the sandbox's own ed25519 host key (generated
once and kept across restarts, so a pinned key stays valid), the client key that is the only key it
accepts, ``server.log``, and ``port``: the last port it listened on, kept after ``down()``.

A restarted sandbox goes back to that port when it is free, so its profiles find it where they left
it; when another program holds it, the sandbox takes a free port and the profiles follow it (see
:func:`provision.ssh.profile_target.follow_sandbox`).

POSIX only: the server relies on sessions and process groups to leave no orphans behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from provision.errors import KeyFileError, SandboxError
from provision.files import atomic_write
from provision.portable import KILL_SIGNAL
from provision.profiles import state_dir
from provision.ssh import keys
from provision.ssh.sandbox_server import BANNER_PREFIX, CLIENT_KEY_FILE, HOST, HOST_KEY_FILE

__all__ = ["SandboxInfo", "down", "known_hosts_line", "last_port", "sandbox_dir", "status", "up"]

_RECORD_FILE = "sandbox.json"
_PORT_FILE = "port"
_LOG_FILE = "server.log"
_LOCK_FILE = ".lock"
_SERVER_MODULE = "provision.ssh.sandbox_server"
_LOG_ROTATE_BYTES = 1024 * 1024
_POLL = 0.02

# Servers this process started, so they can be reaped (not left as zombies) when stopped.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class SandboxInfo:
    """A running sandbox: where it listens, who may log in, with which key, and how to pin it."""

    pid: int
    host: str
    port: int
    user: str
    host_key_line: str  # "ssh-ed25519 AAAA..." (no comment)
    client_key: Path
    home: Path
    started_at: float

    @property
    def uptime(self) -> float:
        """Seconds since the server started."""
        return max(0.0, time.time() - self.started_at)


def sandbox_dir() -> Path:
    """Return (and create, 0700) the sandbox's directory: ``state_dir()/sandbox``.

    Raises:
        ProfileError: If the state directory cannot be created.
        SandboxError: If the sandbox directory cannot be created.
    """
    path = state_dir() / "sandbox"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise SandboxError(
            f"cannot create the sandbox directory {path}: {exc.strerror or exc}",
            hint="make it writable or set MCPCTL_HOME to a writable directory",
        ) from exc
    return path


def known_hosts_line(info: SandboxInfo) -> str:
    """Return the ``known_hosts`` line that pins the sandbox: ``[127.0.0.1]:PORT ssh-ed25519 AAAA...``."""
    return f"[{info.host}]:{info.port} {info.host_key_line}"


def up(*, port: int | None = None, timeout: float = 10.0) -> SandboxInfo:
    """Start the sandbox unless it already runs, and return where it listens.

    Idempotent: a running sandbox is returned as it is. A record left by a sandbox that died (or
    whose pid now belongs to another program) is discarded and a fresh server started; the host key
    is reused, so pins made earlier stay valid.

    Args:
        port: Port on 127.0.0.1, or ``None``: the sandbox's last port (:func:`last_port`) if it is
            free, else (or the first time) a free one.
        timeout: Seconds to wait for the new server to answer with its SSH banner.

    Raises:
        SandboxError: If the platform is unsupported, the keys cannot be read or written, the sandbox
            already runs on another port, or the server does not come up within ``timeout``.
        ProfileError: If the state directory cannot be created.
    """
    _require_posix()
    if port is not None and not 0 < port < 65536:
        raise SandboxError(
            f"port {port} is not a TCP port", hint="pass a number from 1 to 65535 or none at all"
        )
    directory = sandbox_dir()
    with _locked(directory):
        info = _read_record(directory)
        if info is not None:
            if _is_running(info, directory) and _answers(info.port, min(timeout, 2.0)):
                if port is not None and port != info.port:
                    raise SandboxError(
                        f"the sandbox already runs on port {info.port}, not {port}",
                        hint="run `mcpctl sandbox down` first to move it",
                    )
                return info
            # Dead, hung, or the pid was reused by another program: only ever stop our own server.
            if _is_running(info, directory):
                _stop(info.pid, timeout=5.0)
            _remove_record(directory)
        host_key_line = _ensure_keys(directory)
        if port is not None:
            return _start(directory, port, timeout, host_key_line, fallback=False)
        return _start(directory, _read_last_port(directory), timeout, host_key_line, fallback=True)


def down(*, timeout: float = 5.0) -> bool:
    """Stop the sandbox (SIGTERM, then SIGKILL after ``timeout``) and remove its record.

    Returns:
        True if a running server was stopped; False if none was running (a stale record is removed).

    Raises:
        SandboxError: If the server survives SIGKILL.
        ProfileError: If the state directory cannot be created.
    """
    _require_posix()
    directory = sandbox_dir()
    with _locked(directory):
        info = _read_record(directory)
        if info is None:
            return False
        stopped = False
        if _is_running(info, directory):
            _stop(info.pid, timeout=timeout)
            stopped = True
        _remove_record(directory)
        return stopped


def last_port() -> int | None:
    """Return the port the sandbox last listened on (running or not), or None if it never ran.

    Raises:
        ProfileError: If the state directory cannot be created.
        SandboxError: If the sandbox directory cannot be created.
    """
    return _read_last_port(sandbox_dir())


def status() -> SandboxInfo | None:
    """Return the running sandbox, or None if it is stopped (a stale record counts as stopped).

    Raises:
        ProfileError: If the state directory cannot be created.
        SandboxError: If the sandbox directory cannot be created.
    """
    directory = sandbox_dir()
    info = _read_record(directory)
    if info is None or not _is_running(info, directory):
        return None
    return info


# --------------------------------------------------------------------------------------------- keys


def _require_posix() -> None:
    if sys.platform == "win32":
        raise _posix_only()


def _posix_only() -> SandboxError:
    return SandboxError("the sandbox needs Linux or macOS", hint="use `mcpctl provision --host` on Windows")


def _ensure_keys(directory: Path) -> str:
    """Create the host and client keys on first use; return the host key's public line.

    The host key is pinned by every profile that uses the sandbox, so a lost one is an error rather
    than silently replaced.

    Raises:
        SandboxError: If a key exists but cannot be read (it is never replaced silently), was lost, or
            cannot be written.
    """
    try:
        host_key = keys.load_or_create_key(
            directory / HOST_KEY_FILE, "mcpctl-sandbox-host", label="sandbox key", keep_pins=True
        )
        keys.load_or_create_key(directory / CLIENT_KEY_FILE, "mcpctl-sandbox-client", label="sandbox key")
    except KeyFileError as exc:
        raise SandboxError(exc.message, hint=_key_hint(exc)) from exc
    return " ".join(keys.public_line(host_key).split()[:2])


def _key_hint(exc: KeyFileError) -> str:
    """What to do about a sandbox key that cannot be used, by what went wrong with it."""
    repin = "(then re-pin every profile that uses the sandbox)"
    if exc.problem == "lost":
        return f"restore it, or delete {keys.pub_path(exc.path)} and run `mcpctl sandbox up` again {repin}"
    if exc.problem == "unreadable":
        return f"restore it, or delete it and run `mcpctl sandbox up` again {repin}"
    return "make the directory writable or set MCPCTL_HOME to a writable directory"


# ------------------------------------------------------------------------------------------- record


def _read_record(directory: Path) -> SandboxInfo | None:
    try:
        data = json.loads((directory / _RECORD_FILE).read_text())
        return SandboxInfo(
            pid=int(data["pid"]),
            host=str(data["host"]),
            port=int(data["port"]),
            user=str(data["user"]),
            host_key_line=str(data["host_key_line"]),
            client_key=Path(data["client_key"]),
            home=Path(data["home"]),
            started_at=float(data["started_at"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Our own file, half-written or hand-edited: treat it like a stale record.
        return None


def _write_record(directory: Path, info: SandboxInfo) -> None:
    data = {
        "pid": info.pid,
        "host": info.host,
        "port": info.port,
        "user": info.user,
        "host_key_line": info.host_key_line,
        "client_key": str(info.client_key),
        "home": str(info.home),
        "started_at": info.started_at,
    }
    atomic_write(directory / _RECORD_FILE, (json.dumps(data, indent=2) + "\n").encode())


def _remove_record(directory: Path) -> None:
    (directory / _RECORD_FILE).unlink(missing_ok=True)


def _read_last_port(directory: Path) -> int | None:
    try:
        text = (directory / _PORT_FILE).read_text().strip()
    except OSError:
        return None
    # Our own file; anything but a port number (hand-edited, half-written) means "no preference".
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _open_private(path: Path) -> int:
    """Open ``path`` for appending, created 0600 (logs name users and ports: nobody else's business)."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise up/down across processes (two terminals, or a demo racing a user)."""
    if sys.platform == "win32":  # up() and down() refused already; this tells the type checker
        raise _posix_only()
    import fcntl  # POSIX only; imported here so that importing this module works everywhere

    fd = _open_private(directory / _LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---------------------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process; reaps it if it is our exited child."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and certainly not our server
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we know
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        pass
    except OSError:
        return None
    if Path("/proc/self").exists():
        return None  # /proc exists, the process does not
    try:
        result = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, check=False, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.decode(errors="replace") if result.returncode == 0 else None


def _is_running(info: SandboxInfo, directory: Path) -> bool:
    """Whether the recorded pid is alive and is our server for this directory (pids get reused)."""
    if not _pid_alive(info.pid):
        return False
    command = _cmdline(info.pid)
    return command is not None and _SERVER_MODULE in command and str(directory) in command


def _answers(port: int, timeout: float) -> bool:
    """Whether 127.0.0.1:port greets with the sandbox's SSH banner within ``timeout`` seconds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            banner = b""
            while b"\n" not in banner and len(banner) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                banner += chunk
    except OSError:
        return False
    return banner.startswith(BANNER_PREFIX)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _stop(pid: int, *, timeout: float) -> None:
    """SIGTERM the server, SIGKILL it after ``timeout`` seconds.

    Raises:
        SandboxError: If it survives SIGKILL.
    """
    for sig, wait in ((signal.SIGTERM, timeout), (KILL_SIGNAL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            _pid_alive(pid)  # reap it if it is our child
            return
        if _wait_gone(pid, wait):
            return
    raise SandboxError(
        f"the sandbox server (pid {pid}) does not stop", hint=f"kill it by hand with `kill -9 {pid}`"
    )


def _rotate_log(log: Path) -> None:
    with contextlib.suppress(OSError):
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))


def _start(
    directory: Path, port: int | None, timeout: float, host_key_line: str, *, fallback: bool
) -> SandboxInfo:
    """Spawn the server detached, wait for its readiness line and banner, write the record and port.

    With ``fallback``, a taken ``port`` makes the server listen on a free one instead of failing.

    Raises:
        SandboxError: If it cannot be spawned, reports an error, or does not answer within ``timeout``.
    """
    if sys.platform == "win32":  # up() refused already; this tells the type checker
        raise _posix_only()
    import pwd  # POSIX only; imported here so that importing this module works everywhere

    entry = pwd.getpwuid(os.getuid())
    log = directory / _LOG_FILE
    _rotate_log(log)
    command = [sys.executable, "-m", _SERVER_MODULE, "--state", str(directory)]
    if port is not None:
        command += ["--port", str(port)] + (["--fallback"] if fallback else [])
    # Importable even from a source checkout that is not installed; cwd "/" so that nothing in the
    # caller's working directory can shadow the package.
    package_root = str(Path(__file__).resolve().parents[2])  # the directory holding provision/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)

    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(_open_private(log), "ab") as log_file:
            proc = subprocess.Popen(
                [*command, "--ready-fd", str(write_fd)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                pass_fds=(write_fd,),
                cwd="/",
                env=env,
                # Its own session: it outlives this process and no terminal signal reaches it.
                start_new_session=True,
            )
    except OSError as exc:
        os.close(read_fd)
        raise SandboxError(
            f"cannot start the sandbox server: {exc.strerror or exc}", hint=f"see {log}"
        ) from exc
    finally:
        os.close(write_fd)  # the child holds its copy; EOF on read_fd now means it exited
    _children[proc.pid] = proc
    started_at = time.time()
    deadline = time.monotonic() + timeout
    try:
        bound = _read_ready(read_fd, deadline, log)
        if not _answers(bound, max(0.1, deadline - time.monotonic())):
            raise SandboxError(
                f"the sandbox server did not answer on {HOST}:{bound} within {timeout:g} s", hint=f"see {log}"
            )
    except BaseException:
        _stop(proc.pid, timeout=1.0)
        raise
    finally:
        os.close(read_fd)

    info = SandboxInfo(
        pid=proc.pid,
        host=HOST,
        port=bound,
        user=entry.pw_name,
        host_key_line=host_key_line,
        client_key=directory / CLIENT_KEY_FILE,
        home=Path(entry.pw_dir),
        started_at=started_at,
    )
    try:
        _write_record(directory, info)
        atomic_write(directory / _PORT_FILE, f"{bound}\n".encode())
    except OSError as exc:
        _stop(proc.pid, timeout=1.0)
        raise SandboxError(
            f"cannot write {directory / _RECORD_FILE}: {exc.strerror or exc}",
            hint="make the directory writable",
        ) from exc
    return info


def _read_ready(fd: int, deadline: float, log: Path) -> int:
    """Read the server's ``ok PORT`` line; translate ``error ...``, EOF and timeout to SandboxError."""
    buffer = b""
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        readable = select.select([fd], [], [], remaining)[0] if remaining > 0 else []
        if not readable:
            raise SandboxError("the sandbox server did not start within the time allowed", hint=f"see {log}")
        chunk = os.read(fd, 512)
        if not chunk:
            raise SandboxError("the sandbox server exited during startup", hint=f"see {log}")
        buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode(errors="replace")
    status, _, detail = line.partition(" ")
    if status == "ok" and detail.isdigit():
        return int(detail)
    if status == "error":
        raise SandboxError(f"the sandbox server could not start: {detail}", hint=f"see {log}")
    raise SandboxError(f"the sandbox server sent an unexpected startup line {line!r}", hint=f"see {log}")
