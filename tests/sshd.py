"""A throwaway OpenSSH sshd on 127.0.0.1: the one launcher of the tests' fixtures and the benchmarks.

:func:`start_sshd` starts a real ``/usr/sbin/sshd`` on a free loopback port in a directory of its own,
with a host key generated at start (a checked-in key would have the wrong mode), and waits (bounded)
until it answers with an SSH banner. The host key is pinned in a private ``known_hosts`` file; one
client key (:func:`generate_keys`) is authorised for every login the server is told about. Stopping
kills the listener and every session it spawned (killing the listener alone ends no session).

``tests/conftest.py`` wraps it in the ``sshd`` and ``sshd_factory`` fixtures; the benchmarks use
:func:`running_sshd`. Accounts for logins other than the current user (one whose rc files print junk,
one with none at all) are made by :func:`ensure_account`, as root only.
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
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from provision.ssh.target import Target

SSHD = Path("/usr/sbin/sshd")  # sshd insists on being started by its absolute path
LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 15.0  # seconds to wait for sshd to say it listens (it takes ~20 ms)
BIND_ATTEMPTS = 8

NOISY_USER = "mcpctl-noisy"
NOISE = "noisy-rc"  # every line the noisy account's rc files print contains this
QUIET_USER = "mcpctl-bench"  # no rc files: a benchmark measures mcpctl, not the account's shell setup

# What the noisy account's rc files print. Debian's bash sources ~/.bashrc even for `ssh host cmd`
# (sshd runs `$SHELL -c cmd`), so this lands in the output of every remote command.
NOISY_RC_FILES = {
    ".bashrc": f"""\
# Written by the mcpctl test suite: an rc file that prints junk, as some hosts do.
echo '{NOISE}: welcome to the noisy host'
echo '{{"jsonrpc": "2.0", "note": "{NOISE}: looks like JSON, is not from the server"}}'
printf '%s' '{NOISE}: no trailing newline'
echo '{NOISE}: on stderr' >&2
""",
    ".profile": f"""\
# Written by the mcpctl test suite.
echo '{NOISE}: from .profile'
[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"
""",
}


def sshd_config(workdir: Path, port: int, overrides: Mapping[str, str]) -> str:
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


def ssh_command(port: int, client_key: Path, known_hosts: Path) -> list[str]:
    """The OpenSSH client command line (without the host) that logs in with ``client_key`` and checks
    the host key against ``known_hosts`` only: no ssh_config, agent or prompt gets involved."""
    return [
        "ssh",
        "-i",
        str(client_key),
        "-p",
        str(port),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-F",
        "/dev/null",
    ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def descendants(root_pid: int) -> list[int]:
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
    """A client key pair (the client key is authorised on every server started with it)."""

    dir: Path
    client_key: Path
    client_public_line: str


def generate_keys(directory: Path) -> SshKeys:
    """Generate an ed25519 client key pair in ``directory`` (created if needed; the key is 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    client = asyncssh.generate_private_key("ssh-ed25519", comment="mcpctl-test")
    client_key = directory / "client_ed25519"
    client.write_private_key(client_key)
    client_key.chmod(0o600)
    client.write_public_key(directory / "client_ed25519.pub")
    line = client.export_public_key("openssh").decode().strip()
    return SshKeys(dir=directory, client_key=client_key, client_public_line=line)


@dataclass
class SshdServer:
    """A running sshd on 127.0.0.1 (see ``tests/conftest.py`` for what the fixtures promise)."""

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
            import pytest  # only tests ask for the noisy account

            pytest.skip(f"the '{NOISY_USER}' account needs root to create and to log in as")
        return self.target(user=self.noisy_user, **overrides)

    def ssh_command(self) -> list[str]:
        """The OpenSSH client command line (without the host) that logs in with the pinned key."""
        return ssh_command(self.port, self.client_key, self.known_hosts)

    def kill_session_processes(self) -> int:
        """SIGKILL every per-connection sshd process and descendant, keep the listener; return the count."""
        victims = descendants(self.process.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    def session_processes(self) -> list[tuple[int, str]]:
        """Return (pid, command line) of every process the sessions run (sshd's own left out).

        A command that daemonised (double fork) is reparented to init and is not listed.
        """
        found = []
        for pid in descendants(self.process.pid):
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


def start_sshd(
    keys: SshKeys,
    *,
    user: str,
    noisy_user: str | None = None,
    other_logins: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
    workdir: Path | None = None,
) -> SshdServer:
    """Start an sshd in its own directory and wait (bounded) until it answers with an SSH banner.

    Args:
        keys: The client key, authorised for ``user``, ``noisy_user`` and ``other_logins``.
        user: The main login user (the current user).
        noisy_user: The noisy account's name, if it exists.
        other_logins: More accounts the client key may log in as.
        overrides: sshd_config keywords replacing the defaults.
        workdir: The server's directory (created; made 0755). None: a new temporary one, removed
            again if the start fails.

    Raises:
        RuntimeError: If sshd is missing or does not come up (its log is in the message).
    """
    if not SSHD.exists():
        raise RuntimeError(f"{SSHD} is missing; install openssh-server")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # sshd's privilege-separation dir
    logins = list(dict.fromkeys(filter(None, (user, noisy_user, *other_logins))))
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return _start_sshd_in(workdir, keys, user, noisy_user, logins, overrides or {})
    made = Path(tempfile.mkdtemp(prefix="mcpctl-sshd-"))
    try:
        return _start_sshd_in(made, keys, user, noisy_user, logins, overrides or {})
    except BaseException:
        shutil.rmtree(made, ignore_errors=True)
        raise


def _start_sshd_in(
    workdir: Path,
    keys: SshKeys,
    user: str,
    noisy_user: str | None,
    logins: list[str],
    overrides: Mapping[str, str],
) -> SshdServer:
    # sshd reads AuthorizedKeysFile as the login user, so every login user must be able to get there.
    workdir.chmod(0o755)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(workdir / "host_ed25519")
    (workdir / "host_ed25519").chmod(0o600)  # sshd ignores a host key others can read
    host_line = " ".join(host_key.export_public_key("openssh").decode().split()[:2])  # no comment
    auth_dir = workdir / "authorized_keys"
    auth_dir.mkdir(mode=0o755, exist_ok=True)
    for login in logins:
        path = auth_dir / login
        path.write_text(keys.client_public_line + "\n")
        path.chmod(0o644)
    log_path = workdir / "sshd.log"
    log_path.touch()

    for _attempt in range(BIND_ATTEMPTS):
        port = free_port()
        config = workdir / "sshd_config"
        config.write_text(sshd_config(workdir, port, overrides))
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


@contextlib.contextmanager
def running_sshd(
    workdir: Path, *, other_logins: Sequence[str] = (), overrides: Mapping[str, str] | None = None
) -> Iterator[SshdServer]:
    """Start an sshd with a fresh client key under ``workdir``, logging in as the current user (and
    ``other_logins``); stop it and every session when the block ends. ``workdir`` is left in place.

    Raises:
        RuntimeError: sshd is missing or did not come up.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # other logins read their authorized_keys file under it
    keys = generate_keys(workdir / "keys")
    server = start_sshd(
        keys,
        user=getpass.getuser(),
        other_logins=other_logins,
        overrides=overrides,
        workdir=workdir / "server",
    )
    try:
        yield server
    finally:
        server.stop()


def ensure_account(
    name: str, *, shell: str = "/bin/bash", rc_files: Mapping[str, str] | None = None
) -> str | None:
    """Create (idempotently) a local account sshd can log in as; return its name, or None if impossible.

    ``rc_files`` (file name -> text) are written into its home. Only root can do this; several test
    sessions may run at once on one machine, so creation is serialised with a file lock.
    """
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        return None
    # The lock's name predates the quiet account; it stays so that older checkouts take turns too.
    lock_path = Path(tempfile.gettempdir()) / "mcpctl-test-noisy-user.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", shell, name],
                check=True,
                capture_output=True,
                timeout=60,
            )
        # A root sshd with UsePAM no refuses a "locked" account ('!' password); '*' means no password.
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True, timeout=60)
        entry = pwd.getpwnam(name)
        home = Path(entry.pw_dir)
        home.mkdir(mode=0o755, exist_ok=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        for file_name, text in (rc_files or {}).items():
            path = home / file_name
            path.write_text(text)
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return name


def ensure_noisy_user() -> str | None:
    """The account whose rc files print junk on stdout and stderr (None unless root)."""
    return ensure_account(NOISY_USER, rc_files=NOISY_RC_FILES)


def ensure_quiet_user() -> str | None:
    """An account without rc files: a benchmark measures mcpctl, not a shell setup (None unless root)."""
    return ensure_account(QUIET_USER, shell="/bin/sh")
