"""Where asyncssh and OSError failures become mcpctl's errors, each saying what to do next.

One function per way an SSH session fails: the host cannot be reached (:func:`unreachable`), it
refuses the login (:func:`login_refused`), its key is not the pinned one (:func:`host_key_refused`),
the identity file cannot be used (:func:`identity_unusable`), or the connection drops while working
(:func:`dropped`). They build the error; the caller raises it ``from`` the foreign one.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import asyncssh

from provision.errors import ConnectError, HostKeyError, ProfileError
from provision.ssh import keys
from provision.ssh.target import HostKey, Target, address, describe_keys, pinned_phrase

# What a server offered when asyncssh rejected its key: (host, addr, port, key), None if nothing was.
Offered = tuple[str, str, int, asyncssh.SSHKey]


def unreachable(exc: BaseException, host: str, port: int, timeout: float, ref: str) -> ConnectError:
    """Translate a failure to reach host:port (before any SSH login) into a ConnectError."""
    where = address(host, port)
    doctor = f"`mcpctl doctor {ref}` checks each step"
    if isinstance(exc, socket.gaierror):
        return ConnectError(
            f"cannot resolve the host name '{host}' ({exc.strerror})",
            hint="check the spelling in the profile and your DNS or VPN",
        )
    # Checked before OSError: on Python >= 3.11 asyncio.TimeoutError is TimeoutError, an OSError.
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ConnectError(
            f"cannot reach {where}: no answer within {timeout:g} s",
            hint="check that the host is running, the address is right and a firewall or security group "
            f"lets SSH in from this machine ({doctor})",
        )
    if isinstance(exc, ConnectionRefusedError) or (isinstance(exc, OSError) and _refused_somewhere(exc)):
        return ConnectError(
            f"cannot reach {where}: connection refused",
            hint=f"is sshd running and the port right? ({doctor})",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return ConnectError(
            f"cannot reach {where}: {exc.strerror}",
            hint=f"check the address and your network or VPN ({doctor})",
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(
            f"{where} closed the SSH connection during login ({exc.reason})",
            hint=f"look at the sshd log on the host (MaxStartups, AllowUsers, key exchange) ({doctor})",
        )
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return ConnectError(f"cannot reach {where}: {detail}", hint=doctor)


def _refused_somewhere(combined: OSError) -> bool:
    """Whether asyncio's combined OSError for a name with several addresses includes a refusal.

    ``loop.create_connection`` tries each address of a name; when they fail differently it raises one
    OSError whose only record of the attempts is its text (``Multiple exceptions: [Errno 111] Connect
    call failed ('::1', 22, 0, 0), [Errno 101] ...``): no errno, no cause, no list. Python 3.12's
    ``all_errors=True`` would keep them, but asyncssh does not ask for it. So this is the one place the
    SSH seam reads an error's words, and only a foreign one's, only when there is no errno to read.
    """
    return combined.errno is None and f"[Errno {errno.ECONNREFUSED}]" in str(combined)


def login_refused(target: Target) -> ConnectError:
    """The host refused every key offered for ``target.user``."""
    if target.identity_file is not None:
        offered = f"identity file {target.identity_file}"
        fix = f"add {target.identity_file}.pub to ~{target.user}/.ssh/authorized_keys on the host"
    else:
        offered = "the default keys in ~/.ssh" + (" and the ssh-agent" if target.use_agent else "")
        fix = f"set identity_file in the profile to a key authorised for '{target.user}' on the host"
    return ConnectError(
        f"{target.address} refused the login of user '{target.user}' with {offered}",
        hint=f"{fix}, or fix the user or identity_file in profile '{target.ref}'",
    )


def host_key_refused(
    target: Target, known: asyncssh.SSHKnownHosts, offered: Offered | None, reason: str
) -> HostKeyError:
    """The host's key is not the pinned one: tell a changed key from a host never pinned.

    Args:
        target: Where the login went.
        known: The known_hosts the key was checked against.
        offered: What the server presented, if asyncssh let us see it (None: rejected before that,
            e.g. a revoked key).
        reason: asyncssh's reason, for the case nothing was offered.
    """
    file = target.known_hosts
    ref = target.ref
    if offered is None:
        return HostKeyError(
            f"the host key of {target.address} was rejected ({reason})",
            hint=f"check {file} and re-pin it with `mcpctl provision {ref} --host-key ...`",
        )
    host, addr, port, key = offered
    new = HostKey.from_ssh_key(key)
    # Look the host up exactly as asyncssh did, to tell "changed" from "never pinned".
    pinned = known.match(host, addr, None if port == 22 else port)[0]
    if pinned and target.sandbox:
        return HostKeyError(
            f"the host key of {target.address} CHANGED: {file} {pinned_phrase(pinned)} for "
            f"{target.known_hosts_name}, but the host now presents {describe_keys([new])}",
            hint=f"if the sandbox made a new key (its key files were removed), re-pin it from them with "
            f"`mcpctl provision {target.ref} --sandbox`; otherwise another program holds the sandbox's "
            "port: do not connect",
        )
    if pinned:
        return HostKeyError(
            f"the host key of {target.address} CHANGED: {file} {pinned_phrase(pinned)} for "
            f"{target.known_hosts_name}, but the host now presents {describe_keys([new])}",
            hint=f"if the host was rebuilt, check the new fingerprint and re-pin it with `mcpctl "
            f"provision {ref} --host-key {new.fingerprint}` or delete the line for "
            f"{target.known_hosts_name} from {file}, otherwise do not connect: the connection may be "
            "intercepted",
        )
    return HostKeyError(
        f"the host key of {target.address} is not pinned in {file} (the host presents {new.fingerprint})",
        hint="mcpctl never trusts a key on first use: check that fingerprint and pin it with "
        f"`mcpctl provision {ref} --host-key {new.fingerprint}`",
    )


def identity_missing(target: Target) -> ProfileError:
    """The identity file of ``target`` does not exist or cannot be read (checked before connecting)."""
    identity = target.identity_file
    state = "is not readable" if identity is not None and identity.exists() else "does not exist"
    return ProfileError(
        f"the identity file {identity} of profile '{target.ref}' {state}",
        hint="fix identity_file in the profile",
    )


def identity_unusable(target: Target, exc: asyncssh.KeyImportError) -> ProfileError:
    """asyncssh could not load the identity file: encrypted (:class:`KeyNeedsPassphrase`) or not a key."""
    identity = target.identity_file
    if identity is not None and keys.is_encrypted(identity):
        return keys.needs_passphrase(identity, target.ref, exc)
    return ProfileError(
        f"cannot use the identity file {identity} of profile '{target.ref}': {exc}",
        hint="fix identity_file in the profile",
    )


def dropped(target: Target, exc: BaseException, doing: str) -> ConnectError:
    """The connection to ``target`` dropped while ``doing`` something."""
    reason = exc.reason if isinstance(exc, asyncssh.Error) else (str(exc) or type(exc).__name__)
    return ConnectError(
        f"the SSH connection to {target.address} dropped while {doing} ({reason})",
        hint=f"run the command again, and `mcpctl doctor {target.ref}` if it keeps happening",
    )


__all__ = [
    "Offered",
    "dropped",
    "host_key_refused",
    "identity_missing",
    "identity_unusable",
    "login_refused",
    "unreachable",
]
