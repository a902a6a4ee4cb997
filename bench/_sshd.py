"""A throwaway OpenSSH sshd on 127.0.0.1 for benchmarks (the tests have their own fixture).

Keys are generated at start (a checked-in host key would have the wrong mode), the host key is pinned
in a private known_hosts file, and stopping kills the listener and every session it spawned.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd insists on being started by its absolute path
BENCH_USER = "mcpctl-bench"


def bench_user(as_me: bool) -> str | None:
    """The account to log in as (None: the current one), created without rc files when root, so that
    a benchmark measures mcpctl rather than the login account's rc files."""
    if as_me or os.geteuid() != 0 or shutil.which("useradd") is None:
        return None
    try:
        pwd.getpwnam(BENCH_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", BENCH_USER], check=True)
    # A root sshd with UsePAM no refuses a locked account ('!' password); '*' means no password.
    subprocess.run(["usermod", "-p", "*", BENCH_USER], check=True)
    return BENCH_USER


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


@dataclass(frozen=True)
class LocalSshd:
    """How to reach a running local sshd."""

    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path

    def ssh_command(self) -> list[str]:
        """The OpenSSH client command line (without the host) that logs in with the pinned key."""
        return ssh_command(self.port, self.client_key, self.known_hosts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    # ssh-keygen asks before overwriting: a key left by an earlier run is simply replaced.
    for old in (path, path.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, stdin=subprocess.DEVNULL
    )
    return path.with_suffix(".pub").read_text().strip()


def _start(config: Path, log_path: Path, timeout: float) -> subprocess.Popen[bytes] | None:
    """Start sshd and wait (bounded) for it to say it listens; None if it exited instead."""
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    listening = threading.Event()

    def tee() -> None:  # copy sshd's log to a file and notice the line that says it is ready
        assert proc.stderr is not None
        with log_path.open("ab") as log:
            for line in proc.stderr:
                log.write(line)
                if b"Server listening on" in line:
                    listening.set()
        listening.set()  # sshd exited: the caller looks at poll()

    threading.Thread(target=tee, daemon=True).start()
    if listening.wait(timeout) and proc.poll() is None:
        return proc
    proc.kill()
    proc.wait()
    return None


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextlib.contextmanager
def running_sshd(workdir: Path) -> Iterator[LocalSshd]:
    """Start sshd on a free loopback port, logging in as the current user with a fresh key.

    Raises:
        RuntimeError: sshd is missing or did not come up.
    """
    if not os.path.exists(SSHD):
        raise RuntimeError(f"{SSHD} is missing; install openssh-server to run this benchmark.")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    host_pub = _keygen(workdir / "host_key")
    client_pub = _keygen(workdir / "client_key")
    (workdir / "authorized_keys").write_text(client_pub + "\n")
    for _attempt in range(5):
        port = _free_port()
        config = workdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress 127.0.0.1:{port}",
                    f"HostKey {workdir / 'host_key'}",
                    f"PidFile {workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 200",
                    "MaxSessions 64",
                    "ClientAliveInterval 15",
                    "LogLevel INFO",
                ]
            )
            + "\n"
        )
        proc = _start(config, workdir / "sshd.log", 10.0)
        if proc is not None:
            break
    else:
        raise RuntimeError(f"sshd did not start; see {workdir / 'sshd.log'}.")
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    try:
        yield LocalSshd("127.0.0.1", port, getpass.getuser(), workdir / "client_key", known_hosts)
    finally:
        # Killing the listener leaves live sessions running (each is its own setsid'd monitor).
        for pid in [*_descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
