"""The ``--host`` of ``mcpctl provision``: ``[ssh://][user@]host[:port]``, as ``ssh`` reads it."""

from __future__ import annotations

import getpass

from provision.errors import ProfileError


def parse_host_spec(spec: str, *, default_port: int = 22) -> tuple[str, str, int]:
    """Split ``[ssh://][user@]host[:port]`` (IPv6 as ``[::1]:2222``) into ``(user, host, port)``.

    A missing user is the local user name (what ``ssh`` does); a missing port is ``default_port``.

    Raises:
        ProfileError: If the spec is malformed.
    """
    problem = f"'{spec}' is not a valid host"
    how = "use user@host or user@host:port (IPv6: user@[::1]:22)"
    rest = spec.strip().removeprefix("ssh://")
    user, at, hostport = rest.rpartition("@")
    if not at:
        user = getpass.getuser()
    port_text: str | None = None
    if hostport.startswith("["):
        host, bracket, tail = hostport[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ProfileError(problem, hint=how)
        port_text = tail[1:] if tail else None
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host = hostport  # a bare name, or a bare IPv6 address (no port possible without brackets)
    if port_text is None:
        port = default_port
    elif port_text.isdigit():
        port = int(port_text)
    else:
        raise ProfileError(problem, hint=how)
    bad = " \t\n@/,"
    if (
        not host
        or not user
        or host.startswith("-")
        or user.startswith("-")
        or any(c in host for c in bad)
        or any(c in user for c in bad + ":")
        or not 1 <= port <= 65535
    ):
        raise ProfileError(problem, hint=how)
    return user, host, port
