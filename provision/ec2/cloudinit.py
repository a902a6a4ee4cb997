"""cloud-init user-data for mcpctl EC2 hosts: the host key we pin, base packages, the idle watchdog.

The user-data is rendered by hand rather than with a YAML library: it is a fixed shape, every scalar
is written as a JSON string (valid YAML) or as a literal block, and the provision package stays free
of a YAML dependency. ``tests/provision/test_cloudinit.py`` parses the result with a real YAML parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from provision import __version__
from provision.errors import McpctlError
from provision.ssh import keys as ssh_keys

#: EC2 rejects user-data above 16 KB (before base64); we fail before calling AWS.
USER_DATA_LIMIT = 16 * 1024
#: The login user of Canonical's Ubuntu AMIs; the EC2 key pair lands in its authorized_keys.
LOGIN_USER = "ubuntu"
#: What the bootstrap needs before it can install uv and create the venv.
PACKAGES: tuple[str, ...] = ("python3-venv", "python3-pip", "curl")

WATCHDOG_SCRIPT_PATH = "/usr/local/sbin/mcpctl-idle-check"
WATCHDOG_SERVICE_PATH = "/etc/systemd/system/mcpctl-idle.service"
WATCHDOG_TIMER_PATH = "/etc/systemd/system/mcpctl-idle.timer"

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
_PUBLIC_RE = re.compile(r"^\s*ed25519_public:\s*(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class HostKey:
    """An SSH host key generated locally, so the first connection can be verified.

    Attributes:
        private_openssh: the private key in OpenSSH format (goes into user-data only).
        public_line: ``ssh-ed25519 AAAA... comment``, the line to pin in known_hosts.
    """

    private_openssh: str = field(repr=False)
    public_line: str


def generate_host_key(comment: str = "mcpctl-host") -> HostKey:
    """Generate a fresh ed25519 host key.

    Args:
        comment: the comment on the public line (shows up in known_hosts).

    Returns:
        The key pair; ``public_line`` has no trailing newline.
    """
    key = ssh_keys.generate_key(comment)
    return HostKey(
        private_openssh=key.export_private_key("openssh").decode("ascii"),
        public_line=ssh_keys.public_line(key),
    )


def watchdog_script(autostop_minutes: int, login_user: str = LOGIN_USER) -> str:
    """The shell script the systemd timer runs every minute.

    It powers the host off once neither an SSH session of ``login_user`` nor an ``mcp_sales`` server
    process has existed for ``autostop_minutes``. The instance is launched with shutdown behaviour
    "stop", so poweroff stops it (disk kept, compute billing ends).

    Raises:
        ValueError: if ``autostop_minutes`` < 1 or ``login_user`` is not a plain user name.
    """
    if autostop_minutes < 1:
        raise ValueError("autostop_minutes must be >= 1 for a watchdog")
    _check_user(login_user)
    seconds = autostop_minutes * 60
    # The stamp lives in /run (tmpfs) so every boot starts a fresh count: a stamp that survived a
    # stop/start would look hours old and power the host off right after `mcpctl start`.
    # '^sshd' matches the per-session process of OpenSSH (named sshd, or sshd-session since 9.8),
    # which runs as the logged-in user; the listener runs as root and never matches.
    return f"""#!/bin/sh
# mcpctl idle watchdog: power off after {autostop_minutes} min without an SSH session or MCP server
# of {login_user}. Run every minute by mcpctl-idle.timer. Disable: systemctl disable --now mcpctl-idle.timer
set -eu
stamp=/run/mcpctl-idle.stamp
busy() {{
    pgrep -u {login_user} '^sshd' >/dev/null && return 0
    # An MCP server, a warm server's session (named mcp-sales) included; an idle warm server (named
    # mcp-sales-warm) is no session and exits on its own.
    for pid in $(pgrep -u {login_user} -f 'mcp_sales|mcp-sales'); do
        [ "$(cat /proc/$pid/comm 2>/dev/null)" = mcp-sales-warm ] || return 0
    done
    return 1
}}
if busy; then
    touch "$stamp"
    exit 0
fi
[ -e "$stamp" ] || touch "$stamp"
idle=$(( $(date +%s) - $(stat -c %Y "$stamp") ))
if [ "$idle" -ge {seconds} ]; then
    logger -t mcpctl-idle "no session for {autostop_minutes} min: powering off (the instance stops)"
    systemctl poweroff
fi
"""


_SERVICE_UNIT = """[Unit]
Description=mcpctl idle watchdog (power off when unused)

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/mcpctl-idle-check
"""

_TIMER_UNIT = """[Unit]
Description=Run the mcpctl idle watchdog every minute

[Timer]
OnBootSec=1min
OnUnitActiveSec=1min
AccuracySec=10s

[Install]
WantedBy=timers.target
"""


def render_user_data(
    host_key: HostKey,
    *,
    autostop_minutes: int = 0,
    login_user: str = LOGIN_USER,
    packages: Sequence[str] = PACKAGES,
) -> str:
    """Render the ``#cloud-config`` user-data for a new instance.

    It installs exactly ``host_key`` as the only SSH host key (others deleted, none generated), the
    base packages, and, when ``autostop_minutes`` > 0, the idle watchdog (script + systemd timer).

    Args:
        host_key: the host key to install; its public line is what the caller pins.
        autostop_minutes: idle minutes before poweroff; 0 installs no watchdog.
        login_user: the user whose sessions keep the host awake.
        packages: apt packages to install on first boot.

    Returns:
        The user-data text (UTF-8, below ``USER_DATA_LIMIT`` bytes).

    Raises:
        ValueError: a negative ``autostop_minutes``, or a user/package name that is not plain.
        McpctlError: the rendered user-data exceeds EC2's 16 KB limit.
    """
    if autostop_minutes < 0:
        raise ValueError("autostop_minutes must be >= 0")
    _check_user(login_user)
    for package in packages:
        if not _PACKAGE_RE.match(package):
            raise ValueError(f"not a Debian package name: {package!r}")
    if not host_key.public_line.startswith("ssh-ed25519 "):
        raise ValueError("the host key must be an ssh-ed25519 key")

    lines = [
        "#cloud-config",
        f"# Rendered by mcpctl {__version__}. It holds the SSH host private key; see docs/EC2.md.",
        # Replace whatever keys the image carries and generate none: the only host key is the one
        # the client already pinned, so the first connection is verified, not trusted on first use.
        "ssh_deletekeys: true",
        "ssh_genkeytypes: []",
        "ssh_keys:",
        "  ed25519_private: |",
        *_indent(host_key.private_openssh, 4),
        f"  ed25519_public: {_q(host_key.public_line)}",
        "ssh_pwauth: false",
        "package_update: true",
        "packages:",
        *(f"  - {_q(p)}" for p in packages),
    ]
    if autostop_minutes > 0:
        files = (
            (WATCHDOG_SCRIPT_PATH, "0755", watchdog_script(autostop_minutes, login_user)),
            (WATCHDOG_SERVICE_PATH, "0644", _SERVICE_UNIT),
            (WATCHDOG_TIMER_PATH, "0644", _TIMER_UNIT),
        )
        lines.append("write_files:")
        for path, mode, content in files:
            lines += [
                f"  - path: {_q(path)}",
                f"    permissions: {_q(mode)}",
                '    owner: "root:root"',
                "    content: |",
                *_indent(content, 6),
            ]
        lines += [
            "runcmd:",
            '  - ["systemctl", "daemon-reload"]',
            '  - ["systemctl", "enable", "--now", "mcpctl-idle.timer"]',
        ]
    text = "\n".join(lines) + "\n"
    size = len(text.encode("utf-8"))
    if size > USER_DATA_LIMIT:
        raise McpctlError(
            f"the rendered cloud-init user-data is {size} bytes, above EC2's {USER_DATA_LIMIT}-byte limit",
            hint="install fewer packages through user-data; the bootstrap can install the rest",
        )
    return text


def host_public_key_from_user_data(user_data: str) -> str | None:
    """Read back the host public key line from user-data rendered by :func:`render_user_data`.

    Used when an existing instance is found again (the known_hosts entry may be missing locally):
    the user-data is the record of which key we installed.

    Returns:
        ``ssh-ed25519 AAAA... comment``, or None if the text holds no such key.
    """
    match = _PUBLIC_RE.search(user_data)
    if not match:
        return None
    raw = match.group(1)
    try:
        value = json.loads(raw) if raw.startswith('"') else raw
    except json.JSONDecodeError:
        return None
    if not isinstance(value, str) or not value.startswith("ssh-ed25519 "):
        return None
    return value


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def _indent(text: str, spaces: int) -> list[str]:
    """Lines of a YAML literal block; blank lines stay empty so no trailing spaces are emitted."""
    pad = " " * spaces
    return [pad + line if line else "" for line in text.rstrip("\n").split("\n")]


def _check_user(login_user: str) -> None:
    # The name is interpolated into a shell script: only plain POSIX user names are accepted.
    if not _USER_RE.match(login_user):
        raise ValueError(f"not a plain user name: {login_user!r}")
