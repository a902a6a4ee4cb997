"""The network phases: the host key the host presents against the pinned one, then the SSH login.

The host key phase asks the host for each pinned key type before logging in, so a changed key is
named with both fingerprints and the command that re-pins it. The connect phase logs in as the
client's SSH connection will and looks for the server's python, which the session phases need.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import asyncssh

from provision.doctor.context import Diagnosis, since
from provision.doctor.report import Check, shown
from provision.errors import ConnectError, HostKeyError, McpctlError, ProfileError
from provision.layout import RemoteLayout
from provision.ssh.hostkeys import fetch_host_key
from provision.ssh.remote import open_remote
from provision.ssh.sandbox import sandbox_dir
from provision.ssh.target import HostKey, describe_keys, pinned_phrase

_CHECK_TIMEOUT = 10.0  # seconds for the small command that looks for the server's python


# ----------------------------------------------------------------------------------------- host key


async def check_host_key(dx: Diagnosis) -> None:
    """Compare what the host presents with what its known_hosts file pins."""
    assert dx.target is not None
    target = dx.target
    started = time.perf_counter()
    file = shown(target.known_hosts)
    pin = f"`mcpctl provision {dx.name}` (it shows the fingerprint to confirm) or `--host-key`"
    try:
        known = asyncssh.read_known_hosts(str(target.known_hosts))
    except FileNotFoundError:
        dx.fail("host key", started, f"{file} does not exist: no host key is pinned", f"pin it with {pin}.")
    except (OSError, ValueError) as exc:
        dx.fail(
            "host key",
            started,
            f"cannot read {file} ({exc})",
            f"delete {target.known_hosts} and re-pin the key with {pin}.",
        )
    port = None if target.port == 22 else target.port
    pinned, authorities = known.match(target.host_key_alias or target.host, "", port)[:2]
    name = target.known_hosts_name
    if authorities and not pinned:
        detail = f"{file} trusts a certificate authority for {name}; the connect phase checks it"
        dx.add(Check("host key", True, since(started), detail))
        return
    pinned = distinct(pinned)  # one key can sit on several lines: list and compare it once
    presented: list[HostKey] = []
    fetched: dict[tuple[str, ...], HostKey] = {}  # two pinned keys of one type: ask the host once
    for key in pinned:
        algorithms = tuple(alg.decode("ascii") for alg in key.sig_algorithms)
        try:
            if algorithms not in fetched:
                fetched[algorithms] = await fetch_host_key(
                    target.host,
                    target.port,
                    timeout=target.connect_timeout,
                    algorithms=algorithms,
                    name=dx.name,
                )
        except ConnectError as exc:
            if isinstance(exc.__cause__, asyncssh.KeyExchangeFailed):
                continue  # the host has no key of this type (any more)
            detail = (
                f"{file} {pinned_phrase(pinned)} for {name}; not compared: "
                f"{target.address} did not answer (see connect)"
            )
            dx.add(Check("host key", True, since(started), detail, warning=True))
            return
        except HostKeyError as exc:  # the server showed no key at all
            dx.fail("host key", started, exc.message, "ask the host's owner to check its sshd setup.")
        host_key = fetched[algorithms]
        if host_key.fingerprint == key.get_fingerprint("sha256"):
            detail = f"{target.address} presents {host_key.fingerprint}, pinned in {file}"
            dx.add(Check("host key", True, since(started), detail))
            return
        presented.append(host_key)
    if not presented:
        with contextlib.suppress(McpctlError):
            presented.append(
                await fetch_host_key(target.host, target.port, timeout=target.connect_timeout, name=dx.name)
            )
    new = presented[0].fingerprint if presented else "SHA256:..."
    if not pinned:
        dx.fail(
            "host key",
            started,
            f"{file} has no key for {name} (the host presents {new})",
            f"check {new} with the host's owner, then pin it with "
            f"`mcpctl provision {dx.name} --host-key {new}`.",
        )
    changed = (
        f"the host key of {target.address} CHANGED: {file} {pinned_phrase(pinned)} for {name}, but "
        f"the host presents {describe_keys(presented) or 'no key of those types'}"
    )
    if target.sandbox:
        dx.fail(
            "host key",
            started,
            changed,
            "if the sandbox made a new key (its key files were removed), re-pin it from them with "
            f"`mcpctl provision {target.ref} --sandbox`; otherwise another program holds the sandbox's "
            "port: do not connect.",
        )
    dx.fail(
        "host key",
        started,
        changed,
        f"if the host was rebuilt, confirm {new} with its owner and re-pin it with `mcpctl provision "
        f"{dx.name} --host-key {new}` (or delete the line for {name} from {target.known_hosts}); "
        "otherwise do not connect, the connection may be intercepted.",
    )


def distinct(keys: Sequence[asyncssh.SSHKey]) -> list[asyncssh.SSHKey]:
    """``keys`` without repeats of the same key, in order."""
    unique: dict[str, asyncssh.SSHKey] = {}
    for key in keys:
        unique.setdefault(key.get_fingerprint("sha256"), key)
    return list(unique.values())


# ------------------------------------------------------------------------------------------ connect


async def check_connect(dx: Diagnosis) -> None:
    """Log in as the client's connection will, time it, and look for the server's python."""
    assert dx.target is not None and dx.profile is not None
    target = dx.target
    started = time.perf_counter()
    try:
        remote = await open_remote(target)
    except McpctlError as exc:
        dx.fail("connect", started, exc.message, connect_fix(dx, exc))
    dx.connect_s = since(started)
    found = "not checked"
    try:
        dx.python = str(RemoteLayout.of(dx.profile.remote_dir).python)
        result = await remote.run(["test", "-x", dx.python], check=False, timeout=_CHECK_TIMEOUT)
        dx.python_present = result.exit_status == 0
        found = "present" if dx.python_present else "MISSING"
    except McpctlError as exc:
        found = f"not checked ({exc.message})"
    finally:
        await remote.aclose()
    detail = (
        f"logged in to {target.address} as {target.user} in {dx.connect_s * 1000:.0f} ms; "
        f"server python {dx.python or '?'}: {found}"
    )
    dx.add(Check("connect", True, dx.connect_s, detail))


def connect_fix(dx: Diagnosis, exc: McpctlError) -> str:
    """What to do when the login failed with ``exc``."""
    assert dx.target is not None and dx.profile is not None
    target = dx.target
    if isinstance(exc, HostKeyError):
        return exc.hint or exc.message
    if isinstance(exc, ProfileError):
        return f"fix identity_file in profile '{dx.name}'."
    if isinstance(exc.__cause__, asyncssh.PermissionDenied):
        key = f"{target.identity_file}.pub" if target.identity_file else "your public key"
        return (
            f"add {key} to ~{target.user}/.ssh/authorized_keys on the host, or set user and "
            f"identity_file in profile '{dx.name}' to a login the host accepts."
        )
    if dx.profile.kind == "sandbox":
        return _sandbox_connect_fix(dx)
    fix = (
        f"check that the host is running and that {target.address} is right and open to SSH from this "
        "machine (sshd running, the port, a firewall or security group)"
    )
    if dx.profile.kind == "ec2":
        fix += f"; a stopped EC2 instance is started with `mcpctl start {dx.name}`"
    return fix + "."


def _sandbox_connect_fix(dx: Diagnosis) -> str:
    """Tell a stopped sandbox from a running one that does not answer (one that moved is followed)."""
    running = dx.sandbox
    if running is None:
        return (
            "the sandbox is not running: start it with `mcpctl sandbox up` "
            "(`mcpctl connect` also starts it when the client runs it)."
        )
    return (
        f"the sandbox (pid {running.pid}) runs on {running.host}:{running.port} but does not answer: "
        f"restart it with `mcpctl sandbox down` and `mcpctl sandbox up`; "
        f"{shown(sandbox_dir() / 'server.log')} says what it did."
    )


__all__ = ["check_connect", "check_host_key", "connect_fix", "distinct"]
