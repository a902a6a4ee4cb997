"""Shared fixtures: a real OpenSSH sshd on 127.0.0.1, and an isolated MCPCTL_HOME.

Fixtures
--------
``sshd`` (session scope)
    One real ``/usr/sbin/sshd`` for the whole test session, listening on 127.0.0.1 on a free port, with
    a host key and a client key generated at test time. It yields an :class:`SshdServer`:

    - ``host``, ``port``, ``user`` (the current user: root in CI), ``client_key`` (private key path,
      authorised for every login user), ``host_key_line`` (``ssh-ed25519 AAAA...``), ``known_hosts``
      (a file pinning ``[127.0.0.1]:PORT``; treat it as read-only, copy it to change it), ``log_path``
      (sshd's own log, LogLevel VERBOSE);
    - ``target(**overrides)`` -> a :class:`provision.ssh.remote.Target` that logs in as ``user`` with
      ``client_key`` and the pinned ``known_hosts`` (``name="test"``, so advice in error messages reads
      ``mcpctl ... test``); any Target field can be overridden;
    - ``noisy_target(**overrides)`` -> a Target for ``noisy_user`` (``mcpctl-noisy``), an account whose
      ``~/.bashrc`` and ``~/.profile`` print junk to stdout and stderr, as some real hosts do; every
      junk line contains ``noise``. It skips the test when not root (only a root sshd can log in as
      another user, and creating the account needs root);
    - ``session_processes()`` -> ``[(pid, command line)]`` of what the live sessions run right now;
    - ``kill_session_processes()`` kills every per-connection sshd process and their descendants while
      the listener keeps running, i.e. drops every live SSH session the way a network drop or a
      server-side kill does (killing the listener alone ends no session). It affects all sessions on
      this server, so call it only from tests that own every connection open at that moment;
    - ``log_tail(lines)`` -> the end of the sshd log (also attached to the report of a failed test);
    - ``process`` (the listener's Popen) and ``stop()``.

    Tests using it skip (with the reason) when ``/usr/sbin/sshd`` is missing. As root the fixture
    creates ``/run/sshd`` (sshd's privilege-separation directory) and the ``mcpctl-noisy`` account
    (idempotently; it stays on the machine).

``sshd_factory`` (function scope)
    ``sshd_factory(**config)`` starts a private sshd like the session one, with sshd_config keywords
    overridden (``sshd_factory(MaxSessions="10")``, ``sshd_factory(ForceCommand="...")``), stopped
    when the test ends. Use it to change the server's settings, kill its sessions or its listener
    (``server.process``) without disturbing other tests.

``mcpctl_home`` (function scope)
    Points ``MCPCTL_HOME`` at a fresh temporary directory and returns it, so nothing touches the real
    ``~/.config/mcpctl`` or ``~/.local/state/mcpctl``.

``anyio_backend`` (session scope)
    ``"asyncio"``: asyncssh runs on asyncio only. Mark async tests with ``@pytest.mark.anyio``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from provision.ssh.remote import Target

SSHD = Path("/usr/sbin/sshd")
LOOPBACK = "127.0.0.1"
NOISY_USER = "mcpctl-noisy"
NOISE = "noisy-rc"  # every line the noisy account's rc files print contains this
READY_TIMEOUT = 15.0  # seconds to wait for sshd to say it listens (it takes ~20 ms)
BIND_ATTEMPTS = 8

# What the noisy account's rc files print. Debian's bash sources ~/.bashrc even for `ssh host cmd`
# (sshd runs `$SHELL -c cmd`), so this lands in the output of every remote command.
_NOISY_BASHRC = f"""\
# Written by the mcpctl test suite: an rc file that prints junk, as some hosts do.
echo '{NOISE}: welcome to the noisy host'
echo '{{"jsonrpc": "2.0", "note": "{NOISE}: looks like JSON, is not from the server"}}'
printf '%s' '{NOISE}: no trailing newline'
echo '{NOISE}: on stderr' >&2
"""
_NOISY_PROFILE = f"""\
# Written by the mcpctl test suite.
echo '{NOISE}: from .profile'
[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"
"""


def _sshd_config(workdir: Path, port: int, overrides: dict[str, str]) -> str:
    """Build an sshd_config; sshd keeps the first value of a keyword, so overrides replace defaults."""
    settings = {
        "ListenAddress": f"{LOOPBACK}:{port}",
        "HostKey": str(workdir / "host_ed25519"),
        "PidFile": str(workdir / "sshd.pid"),
        "AuthorizedKeysFile": str(workdir / "authorized_keys" / "%u"),
        "StrictModes": "no",  # keys live under the temp dir, not in a 0700 ~/.ssh
        "UsePAM": "no",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "PermitRootLogin": "prohibit-password",
        "Subsystem": "sftp internal-sftp",
        "MaxStartups": "200",
        "MaxSessions": "64",
        "ClientAliveInterval": "15",
        "LogLevel": "VERBOSE",
    }
    settings.update(overrides)
    return "".join(f"{key} {value}\n" for key, value in settings.items())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _descendants(root_pid: int) -> list[int]:
    """Return the pids of every descendant of ``root_pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        # Field 4 is the parent pid; the command name (field 2) may contain spaces, so split after ')'.
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class SshKeys:
    """Key material generated once per session (the client key is authorised on every server)."""

    dir: Path
    client_key: Path
    client_public_line: str


@dataclass
class SshdServer:
    """A running sshd on 127.0.0.1 (see the module docstring)."""

    host: str
    port: int
    user: str
    client_key: Path
    host_key_line: str
    known_hosts: Path
    log_path: Path
    workdir: Path
    process: subprocess.Popen[bytes]
    noisy_user: str | None = None
    noise: str = NOISE
    _tee: _StderrTee | None = field(default=None, repr=False)

    def target(self, **overrides: Any) -> Target:
        """Return a Target logging in as ``self.user`` with the session client key; fields overridable."""
        base = Target(
            host=self.host,
            port=self.port,
            user=self.user,
            known_hosts=self.known_hosts,
            identity_file=self.client_key,
            connect_timeout=10.0,
            name="test",
        )
        return dataclasses.replace(base, **overrides)

    def noisy_target(self, **overrides: Any) -> Target:
        """Return a Target for the account whose rc files print junk (skips the test when unavailable)."""
        if self.noisy_user is None:
            pytest.skip(f"the '{NOISY_USER}' account needs root to create and to log in as")
        return self.target(user=self.noisy_user, **overrides)

    def kill_session_processes(self) -> int:
        """SIGKILL every per-connection sshd process and descendant, keep the listener; return the count."""
        victims = _descendants(self.process.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    def session_processes(self) -> list[tuple[int, str]]:
        """Return (pid, command line) of every process the sessions run (sshd's own left out).

        A command that daemonised (double fork) is reparented to init and is not listed.
        """
        found = []
        for pid in _descendants(self.process.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue  # it ended while we looked
            if comm != "sshd":
                found.append((pid, " ".join(a.decode(errors="replace") for a in argv if a)))
        return found

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the sshd log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the listener and every session it started, and wait (bounded) for them to exit."""
        self.kill_session_processes()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._tee is not None:
            self._tee.join(timeout=10)


class _StderrTee(threading.Thread):
    """Copy sshd's stderr (-e) to the log file; ``ready`` is set once sshd listens or has exited."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.log_path = log_path
        self.ready = threading.Event()
        self.listening = False

    def run(self) -> None:
        assert self.process.stderr is not None
        with self.log_path.open("ab", buffering=0) as log:
            for line in self.process.stderr:
                log.write(line)
                if b"Server listening on" in line:
                    self.listening = True
                    self.ready.set()
        self.ready.set()  # EOF: sshd exited (e.g. its port was taken)


def _read_banner(port: int, timeout: float) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = b""
        while b"\n" not in data and len(data) < 256:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
        return data


def start_sshd(keys: SshKeys, *, user: str, noisy_user: str | None, overrides: dict[str, str]) -> SshdServer:
    """Start an sshd in a new directory and wait (bounded) until it answers with an SSH banner.

    Args:
        keys: The session's client key, authorised for ``user`` and ``noisy_user``.
        user: The main login user (the current user).
        noisy_user: The noisy account's name, if it exists.
        overrides: sshd_config keywords replacing the defaults.

    Raises:
        RuntimeError: If sshd does not come up (its log is in the message).
    """
    workdir = Path(tempfile.mkdtemp(prefix="mcpctl-sshd-"))
    try:
        return _start_sshd_in(workdir, keys, user=user, noisy_user=noisy_user, overrides=overrides)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _start_sshd_in(
    workdir: Path, keys: SshKeys, *, user: str, noisy_user: str | None, overrides: dict[str, str]
) -> SshdServer:
    # sshd reads AuthorizedKeysFile as the login user, so the noisy user must be able to get there.
    workdir.chmod(0o755)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(workdir / "host_ed25519")
    (workdir / "host_ed25519").chmod(0o600)  # sshd ignores a host key others can read
    host_line = " ".join(host_key.export_public_key("openssh").decode().split()[:2])  # no comment
    auth_dir = workdir / "authorized_keys"
    auth_dir.mkdir(mode=0o755)
    for login in filter(None, (user, noisy_user)):
        path = auth_dir / login
        path.write_text(keys.client_public_line + "\n")
        path.chmod(0o644)
    log_path = workdir / "sshd.log"
    log_path.touch()

    for _attempt in range(BIND_ATTEMPTS):
        port = _free_port()
        config = workdir / "sshd_config"
        config.write_text(_sshd_config(workdir, port, overrides))
        log_start = log_path.stat().st_size
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        tee = _StderrTee(process, log_path)
        tee.start()
        if tee.ready.wait(READY_TIMEOUT) and tee.listening:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout=10)
        tee.join(timeout=10)
        with log_path.open("rb") as log:
            log.seek(log_start)
            attempt_log = log.read().decode(errors="replace")
        if "Address already in use" not in attempt_log:
            raise RuntimeError(f"sshd did not start; its log:\n{attempt_log}")
        # Another process took the port between our probe and sshd's bind: try another one.
    else:
        raise RuntimeError(f"sshd found no free port in {BIND_ATTEMPTS} attempts")

    banner = _read_banner(port, READY_TIMEOUT)
    if not banner.startswith(b"SSH-2.0-"):
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(f"sshd on port {port} answered {banner!r} instead of an SSH banner")
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[{LOOPBACK}]:{port} {host_line}\n")
    return SshdServer(
        host=LOOPBACK,
        port=port,
        user=user,
        client_key=keys.client_key,
        host_key_line=host_line,
        known_hosts=known_hosts,
        log_path=log_path,
        workdir=workdir,
        process=process,
        noisy_user=noisy_user,
        _tee=tee,
    )


def _ensure_noisy_user() -> str | None:
    """Create (idempotently) the account whose rc files print junk; return its name, or None if impossible.

    Several test sessions may run at once on one machine, so creation is serialised with a file lock.
    """
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        return None
    lock_path = Path(tempfile.gettempdir()) / "mcpctl-test-noisy-user.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(NOISY_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/bash", NOISY_USER],
                check=True,
                capture_output=True,
                timeout=60,
            )
        # A root sshd with UsePAM no refuses a "locked" account ('!' password); '*' means no password.
        subprocess.run(["usermod", "-p", "*", NOISY_USER], check=True, capture_output=True, timeout=60)
        entry = pwd.getpwnam(NOISY_USER)
        home = Path(entry.pw_dir)
        home.mkdir(mode=0o755, exist_ok=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        for name, text in ((".bashrc", _NOISY_BASHRC), (".profile", _NOISY_PROFILE)):
            path = home / name
            path.write_text(text)
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return NOISY_USER


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncssh is asyncio-only."""
    return "asyncio"


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshKeys]:
    """The session's client key pair, generated at test time (mode 0600)."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: install openssh-server to run the real-SSH tests")
    if not sys.platform.startswith("linux"):
        pytest.skip("the real-sshd fixture reads /proc: Linux only")
    keydir = Path(tempfile.mkdtemp(prefix="mcpctl-keys-"))
    client = asyncssh.generate_private_key("ssh-ed25519", comment="mcpctl-test")
    client_key = keydir / "client_ed25519"
    client.write_private_key(client_key)
    client_key.chmod(0o600)
    client.write_public_key(keydir / "client_ed25519.pub")
    line = client.export_public_key("openssh").decode().strip()
    yield SshKeys(dir=keydir, client_key=client_key, client_public_line=line)
    shutil.rmtree(keydir, ignore_errors=True)


@pytest.fixture(scope="session")
def _login_users() -> tuple[str, str | None]:
    """The main login user (the current one) and the noisy account (None unless root)."""
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # sshd's privilege-separation dir
    return getpass.getuser(), _ensure_noisy_user()


_RUNNING: list[SshdServer] = []


@pytest.fixture(scope="session")
def sshd(ssh_keys: SshKeys, _login_users: tuple[str, str | None]) -> Iterator[SshdServer]:
    """The session-wide real sshd (see the module docstring)."""
    user, noisy = _login_users
    server = start_sshd(ssh_keys, user=user, noisy_user=noisy, overrides={})
    _RUNNING.append(server)
    try:
        yield server
    finally:
        _RUNNING.remove(server)
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def sshd_factory(
    ssh_keys: SshKeys, _login_users: tuple[str, str | None]
) -> Iterator[Callable[..., SshdServer]]:
    """Start private sshd servers with sshd_config overrides; all are stopped when the test ends."""
    user, noisy = _login_users
    started: list[SshdServer] = []

    def start(**overrides: str) -> SshdServer:
        server = start_sshd(ssh_keys, user=user, noisy_user=noisy, overrides=overrides)
        started.append(server)
        _RUNNING.append(server)
        return server

    yield start
    for server in started:
        _RUNNING.remove(server)
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def mcpctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MCPCTL_HOME at a fresh directory for this test and return it."""
    home = tmp_path / "mcpctl-home"
    monkeypatch.setenv("MCPCTL_HOME", str(home))
    return home


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the sshd log tail to the report of a failed test that used an sshd."""
    report = yield
    if report.failed and _RUNNING and {"sshd", "sshd_factory"} & set(getattr(item, "fixturenames", ())):
        for server in _RUNNING:
            report.sections.append((f"sshd log tail (port {server.port})", server.log_tail()))
    return report
