"""Host keys: fetch a server's key, check it against what the user said, and pin it in a known_hosts file.

mcpctl never trusts a key on first use. A key reaches a profile's own known_hosts only through
:func:`pin_host_key` (after the user confirmed the fingerprint, gave it with ``--host-key``, or mcpctl
made the key itself), and :func:`load_known_hosts` is the only way a connection reads it.
:func:`move_pin` follows a host that kept its key but changed port (the sandbox after a restart).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path

import asyncssh

from provision.errors import ConnectError, HostKeyError, ProfileError
from provision.files import atomic_write
from provision.ssh.failures import unreachable
from provision.ssh.target import HostKey, HostKeySpec, Target, known_hosts_entry

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


# --------------------------------------------------------------------------------------- reading


def load_known_hosts(target: Target) -> asyncssh.SSHKnownHosts:
    """Read the target's known_hosts; a missing file means the host was never pinned.

    An explicit, loaded object also guarantees asyncssh never falls back to ~/.ssh/known_hosts (it
    does when given an empty value).

    Raises:
        HostKeyError: The file does not exist or cannot be read.
    """
    path = target.known_hosts
    try:
        return asyncssh.read_known_hosts(str(path))
    except FileNotFoundError:
        raise HostKeyError(
            f"the host key of {target.address} is not pinned: {path} does not exist",
            hint=f"pin it with `mcpctl provision {target.ref}` (shows the fingerprint to confirm) or "
            "`--host-key`",
        ) from None
    except (OSError, ValueError) as exc:
        raise HostKeyError(
            f"cannot read the pinned host keys in {path} ({exc})",
            hint=f"delete the file and re-pin with `mcpctl provision {target.ref} --host-key ...`",
        ) from exc


# -------------------------------------------------------------------------------------- fetching


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
        raise unreachable(exc, host, port, timeout, name or "NAME") from exc
    if key is None:
        raise HostKeyError(
            f"{host}:{port} presented no host key", hint="mcpctl cannot pin it, use another host"
        )
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
        f"{', '.join(seen) or 'no key of that type'})",
        hint="check the fingerprint with the host's owner "
        "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host)",
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
                f"'{value}' is not a SHA256 fingerprint", hint="copy it whole from `ssh-keygen -lf KEY.pub`"
            )
        return HostKeySpec(fingerprint=f"SHA256:{digest}")
    if value[:4].upper() == "MD5:":
        raise HostKeyError(
            "MD5 fingerprints are too weak to pin", hint="give the SHA256 one (`ssh-keygen -lf`)"
        )
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
        "fingerprint",
        hint="copy the host's /etc/ssh/ssh_host_ed25519_key.pub or its `ssh-keygen -lf` output",
    )


# --------------------------------------------------------------------------------------- pinning


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
            "pinning needs the public key line (ssh-ed25519 AAAA...), not just its fingerprint",
            hint="pass the host's /etc/ssh/ssh_host_ed25519_key.pub line with --host-key",
        )
    name = alias or known_hosts_entry(host, port)
    kept: list[str] = []
    for line in _read_lines(known_hosts):
        fields = line.split()
        if not fields or fields[0].startswith(("#", "@")):
            kept.append(line)
            continue
        names = [n for n in fields[0].split(",") if n != name and not _hashed_name_matches(n, name)]
        if names:
            kept.append(" ".join([",".join(names), *fields[1:]]))
    kept.append(f"{name} {spec.public_key_line}")
    _write_lines(known_hosts, kept, make_dir=True)


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
    lines = _read_lines(known_hosts)
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
    _write_lines(known_hosts, kept)
    return True


def _read_lines(known_hosts: Path) -> list[str]:
    """The lines of ``known_hosts``; none when the file does not exist.

    Raises:
        ProfileError: The file exists but cannot be read.
    """
    try:
        return known_hosts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ProfileError(
            f"cannot read {known_hosts}: {exc.strerror or exc}", hint="check its permissions"
        ) from exc


def _write_lines(known_hosts: Path, lines: list[str], *, make_dir: bool = False) -> None:
    """Replace ``known_hosts`` with ``lines`` atomically, mode 0600 (its directory 0700 with ``make_dir``).

    Raises:
        ProfileError: The file cannot be written.
    """
    try:
        if make_dir:
            known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(known_hosts, ("\n".join(lines) + "\n").encode("utf-8"))
    except OSError as exc:
        raise ProfileError(
            f"cannot write {known_hosts}: {exc.strerror or exc}", hint="check the directory"
        ) from exc


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
    "fetch_host_key",
    "load_known_hosts",
    "move_pin",
    "parse_host_key",
    "pin_host_key",
    "verify_host_key",
]
