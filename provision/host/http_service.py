"""What the HTTP server of a profile is on its host: names, paths, command line and systemd unit.

``mcpctl provision NAME --http`` runs ``mcp-sales serve --transport streamable-http`` bound to
127.0.0.1 (only SSH reaches it), with an API key mcpctl generates. Where systemd runs the host, the
server is a hardened unit written here (:func:`unit_text`); elsewhere (the sandbox, containers) it is a
background process with a pid file (:data:`LAUNCHER`). Nothing here touches the network: the steps
that run on the host are in :mod:`provision.host.http_install`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from provision.errors import ProfileError
from provision.layout import SERVER_MODULE, RemoteLayout
from provision.profiles import Profile

LISTEN_HOST = "127.0.0.1"
HTTP_DIR = "http"  # under the remote state directory (.mcpctl): key, pid file, log
KEY_FILE = "api-key"
PID_FILE = "server.pid"
LOG_FILE = "server.log"
CREDENTIAL = "api-key"  # the LoadCredential= name: systemd hands the key to the service, not the user
UNIT_DIR = PurePosixPath("/etc/systemd/system")
_PORT_BASE, _PORT_SPAN = 20000, 10000


def default_port(name: str) -> int:
    """A port on the host's 127.0.0.1 for profile ``name``: stable, and different for most names.

    Several profiles may share a host; deriving the port from the name keeps their servers apart
    without asking (a clash is reported when the server cannot bind, and the profile's ``http.port``
    can be edited).
    """
    return _PORT_BASE + zlib.crc32(name.encode("utf-8")) % _PORT_SPAN


def unit_name(name: str) -> str:
    """The systemd unit of profile ``name``: ``mcp-sales-NAME.service``."""
    return f"mcp-sales-{name}.service"


@dataclass(frozen=True)
class HttpService:
    """The HTTP server of one profile on its host: where its files are and how it is started.

    Attributes:
        name: The profile name.
        layout: The profile's remote layout (code, venv, data).
        port: The port on the host's 127.0.0.1.
        server_args: The server's data and column arguments (``RemoteLayout.server_args``).
    """

    name: str
    layout: RemoteLayout
    port: int
    server_args: tuple[str, ...]

    @classmethod
    def of(cls, profile: Profile) -> HttpService:
        """The service of ``profile`` (its ``http`` settings, else the defaults).

        Raises:
            ProfileError: The profile's data cannot be passed to the server (several files, no name).
        """
        layout = RemoteLayout.of(profile.remote_dir)
        port = profile.http.port if profile.http is not None else default_port(profile.name)
        args = layout.server_args(profile.data, profile.columns, profile.server_args)
        return cls(profile.name, layout, port, tuple(args))

    @property
    def directory(self) -> PurePosixPath:
        """Our directory on the host for the key, the pid file and the log (0700)."""
        return self.layout.state / HTTP_DIR

    @property
    def key_path(self) -> PurePosixPath:
        return self.directory / KEY_FILE

    @property
    def pid_path(self) -> PurePosixPath:
        return self.directory / PID_FILE

    @property
    def log_path(self) -> PurePosixPath:
        return self.directory / LOG_FILE

    @property
    def unit(self) -> str:
        return unit_name(self.name)

    @property
    def unit_path(self) -> PurePosixPath:
        return UNIT_DIR / self.unit

    @property
    def cache_name(self) -> str:
        """The unit's CacheDirectory= (``/var/cache/mcp-sales-NAME``), the one place it may write."""
        return f"mcp-sales-{self.name}"

    @property
    def url(self) -> str:
        """The server's MCP endpoint as seen on the host."""
        return f"http://{LISTEN_HOST}:{self.port}/mcp"

    def argv(self, key_file: str, cache_dir: str | None = None) -> list[str]:
        """The server's argv: streamable HTTP on 127.0.0.1, the key read from ``key_file``."""
        cache = ["--cache-dir", cache_dir] if cache_dir is not None else []
        return [
            str(self.layout.python),
            *("-m", SERVER_MODULE, "serve", "--transport", "streamable-http"),
            *("--host", LISTEN_HOST, "--port", str(self.port), "--api-key-file", key_file),
            *cache,
            *self.server_args,
        ]


# ------------------------------------------------------------------------------------------ systemd


def _unsafe_path(path: str) -> bool:
    return any(c.isspace() or c in "\"'\\;" or ord(c) < 32 for c in path)


def systemd_path(path: str | PurePosixPath) -> str:
    """A path as a value of a path-list directive (BindReadOnlyPaths=, LoadCredential=...).

    Raises:
        ProfileError: The path holds whitespace, a quote, a backslash or a control character, which
            those directives would split or unquote.
    """
    text = str(path)
    if _unsafe_path(text):
        raise ProfileError(
            f"the path {text!r} cannot be named in a systemd unit (whitespace, quote or backslash)",
            hint="choose a --remote-dir without such characters and provision again",
        )
    return text.replace("%", "%%")  # systemd expands %-specifiers in these values


def systemd_arg(arg: str, *, first: bool = False) -> str:
    """One ExecStart= argument, quoted so systemd passes exactly ``arg`` (no $-variables, no %-specifiers).

    ``first``: the executable, where a leading ``@-:+!|`` would be read as a flag.

    Raises:
        ProfileError: The argument holds a control character (a unit file is line-based).
    """
    if any(ord(c) < 32 for c in arg):
        raise ProfileError(
            f"the server argument {arg!r} holds a control character, which a systemd unit cannot carry",
            hint="remove it from the profile's server_args or columns",
        )
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    plain = escaped and not any(c.isspace() or c in "'\"\\" for c in escaped)
    return escaped if plain and not (first and escaped[0] in "@-:+!|") else f'"{escaped}"'


def exec_line(argv: Sequence[str], *, specifiers: Sequence[int] = ()) -> str:
    """ExecStart='s value: every argument quoted, except those at ``specifiers`` (they hold %-specifiers)."""
    return " ".join(arg if i in specifiers else systemd_arg(arg, first=i == 0) for i, arg in enumerate(argv))


def unit_text(service: HttpService) -> str:
    """The hardened systemd unit running ``service``.

    The service runs as a transient user (``DynamicUser``) that owns nothing: the code, venv and data
    are bound read-only, the home directories are hidden, the only writable place is its cache
    directory, and the API key reaches it as a systemd credential (read by systemd as root from the
    0600 key file; the service user never needs to read that file).

    Raises:
        ProfileError: A path or argument cannot be written into a unit (see :func:`systemd_path`).
    """
    cache = f"%C/{service.cache_name}"
    argv = service.argv(f"%d/{CREDENTIAL}", cache)
    key_at = argv.index("--api-key-file") + 1
    cache_at = argv.index("--cache-dir") + 1
    root = systemd_path(service.layout.root)
    lines = [
        f"# mcpctl: the HTTP server of profile '{service.name}'.",
        f"# `mcpctl provision {service.name} --http` rewrites this file; edits here are lost.",
        "[Unit]",
        f"Description=mcp-sales HTTP MCP server (mcpctl profile {service.name})",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=120",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_line(argv, specifiers=(key_at, cache_at))}",
        "Restart=on-failure",
        "RestartSec=2",
        "TimeoutStopSec=20",
        # Identity: a transient user; the key as a credential (only this service can read it).
        "DynamicUser=yes",
        f"LoadCredential={CREDENTIAL}:{systemd_path(service.key_path)}",
        f"CacheDirectory={service.cache_name}",
        f"ReadWritePaths={cache}",
        f"Environment=HOME={cache} PYTHONDONTWRITEBYTECODE=1",
        "UMask=0077",
        # File system: everything read-only, homes hidden, only the project bound back in (read-only).
        "ProtectSystem=strict",
        "ProtectHome=tmpfs",
        f"BindReadOnlyPaths={root}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        # Privileges and kernel: nothing to gain, nothing to change.
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "RestrictSUIDSGID=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        # AF_INET6 and outbound for data read from S3; the listener itself is bound to 127.0.0.1.
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- background process

#: Run by the host's venv python as ``python -c LAUNCHER PIDFILE LOGFILE ARGV...``: starts the server in
#: a session of its own (so it outlives the SSH session that started it), its output appended to the
#: log, and records its pid atomically. Prints the pid.
LAUNCHER = """\
import os, subprocess, sys
pid_file, log_file, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
os.umask(0o077)
with open(log_file, "ab") as log:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
with open(pid_file + ".tmp", "w") as out:
    out.write(f"{child.pid}\\n")
os.replace(pid_file + ".tmp", pid_file)
print(child.pid)
"""

__all__ = [
    "LAUNCHER",
    "LISTEN_HOST",
    "HttpService",
    "default_port",
    "exec_line",
    "systemd_arg",
    "systemd_path",
    "unit_name",
    "unit_text",
]
