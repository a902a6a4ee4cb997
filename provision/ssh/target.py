"""The values of the SSH seam: where to log in (:class:`Target`), what a command returned
(:class:`RunResult`), and host keys as fetched (:class:`HostKey`) or described by the user
(:class:`HostKeySpec`), with the phrases that name them in messages.

Plain frozen dataclasses: no connection, no file access, so every other module of ``provision.ssh``
(and the rooms that only pass these values around) can import them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncssh


@dataclass(frozen=True)
class Target:
    """Where and how to log in. Built by :func:`provision.ssh.profile_target.target_for`; tests build
    it directly."""

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
    sandbox: bool = False  # the local sandbox: its key is re-pinned from its own files, not --host-key

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets), for messages."""
        return address(self.host, self.port)

    @property
    def known_hosts_name(self) -> str:
        """The name this target's key is pinned under in its known_hosts file."""
        return self.host_key_alias or known_hosts_entry(self.host, self.port)

    @property
    def ref(self) -> str:
        """The profile name for the commands our advice names, or ``NAME`` when there is none."""
        return self.name or "NAME"


@dataclass(frozen=True)
class RunResult:
    """The outcome of :meth:`provision.ssh.remote.Remote.run`. ``exit_status`` is negative (-N) when
    killed by signal N and 255 when the host reported no status at all (as ``ssh`` does)."""

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


def address(host: str, port: int) -> str:
    """``host:port`` for messages, an IPv6 address in brackets: ``[::1]:22``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def known_hosts_entry(host: str, port: int) -> str:
    """Return the known_hosts name for ``host``/``port``: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


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


__all__ = [
    "HostKey",
    "HostKeySpec",
    "RunResult",
    "Target",
    "address",
    "describe_keys",
    "known_hosts_entry",
    "pinned_phrase",
]
