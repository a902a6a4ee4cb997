"""The extension's ``manifest.json`` (MCPB manifest 0.4) and the ``bundle.json`` it carries.

Server type ``uv``: Claude Desktop's own uv installs the slim toolkit from the bundle's
``pyproject.toml`` on any platform (a ``binary`` would have to be built per platform, and macOS
unpacks it without the execute bit). ``mcp_config`` runs ``server/main.py`` through uv with the
settings form's values in the environment; the form asks only for what differs per user (host, port,
user, key file, data file), and the host keys stay in ``bundle.json``, out of the form's reach.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from provision.bundle.launch import (
    BUNDLE_FILE,
    BUNDLE_FORMAT,
    ENV_DATA,
    ENV_HOST,
    ENV_KEY_FILE,
    ENV_PORT,
    ENV_USER,
)
from provision.layout import RemoteLayout
from provision.profiles import Profile

MANIFEST_VERSION = "0.4"
ENTRY_POINT = "server/main.py"
ICON = "icon.png"
PYTHON_RANGE = ">=3.10.0 <3.14.0"
# The server's tools, as the extension's page lists them (a test holds them to the server's own list).
TOOLS: tuple[tuple[str, str], ...] = (
    ("top_n_products", "The best-selling products of an operation (city/store), by units or revenue."),
    ("list_operations", "All operations with their exact names, product counts, totals and date ranges."),
    ("list_products", "The products sold, optionally for one operation."),
    ("dataset_summary", "What the data holds: rows, operations, products, date range, grain, totals."),
    ("sales_over_time", "Units and revenue per period for an operation or a product."),
    ("forecast_sales", "A Prophet forecast of an operation's (or a product's) sales."),
)


def extension_name(profile: Profile) -> str:
    return f"mcpctl-sales-{profile.name}"


def _home_relative(path: Path | None) -> str:
    """A key path as a form default: under the home folder it becomes ``${HOME}/...`` for any user."""
    if path is None:
        return "${HOME}/.ssh/id_ed25519"
    try:
        return "${HOME}/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def remote_data_path(profile: Profile) -> str:
    """The data file as the server on the host reads it (``remote_dir/data/BASENAME``), or ""."""
    if not profile.data:
        return ""
    return str(RemoteLayout.of(profile.remote_dir).data_file(profile.data[0]))


def user_config(profile: Profile) -> dict[str, Any]:
    return {
        "host": {
            "type": "string",
            "title": "Host",
            "description": "The host's name or address (its key must be the one pinned in this extension).",
            "required": True,
            "default": profile.host or "",
        },
        "port": {
            "type": "number",
            "title": "SSH port",
            "description": "The host's SSH port.",
            "default": profile.port,
            "min": 1,
            "max": 65535,
        },
        "user": {
            "type": "string",
            "title": "User",
            "description": "Your login on the host.",
            "required": True,
            "default": profile.user,
        },
        "key_file": {
            "type": "file",
            "title": "SSH key file",
            "description": "Your private key for the host (one without a passphrase).",
            "required": True,
            "default": _home_relative(profile.identity_file),
        },
        "data_path": {
            "type": "string",
            "title": "Data file on the host",
            "description": "The sales table the server reads (CSV or Parquet), as a path on the host.",
            "required": False,
            "default": remote_data_path(profile),
        },
    }


def mcp_config() -> dict[str, Any]:
    return {
        "command": "uv",
        "args": ["run", "--quiet", "--directory", "${__dirname}", ENTRY_POINT],
        "env": {
            ENV_HOST: "${user_config.host}",
            ENV_PORT: "${user_config.port}",
            ENV_USER: "${user_config.user}",
            ENV_KEY_FILE: "${user_config.key_file}",
            ENV_DATA: "${user_config.data_path}",
        },
    }


def manifest(profile: Profile, *, version: str, fingerprints: list[str]) -> dict[str, Any]:
    """The manifest of the extension for ``profile``."""
    pinned = ", ".join(fingerprints)
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": extension_name(profile),
        "display_name": f"Sales analytics: {profile.name}",
        "version": version,
        "description": f"Ask about the sales data on {profile.host}: top products, trends and forecasts.",
        "long_description": (
            "Runs the mcp_sales server on your sales host over SSH, started on demand and reconnected "
            "when the link drops (`mcpctl connect`). The data stays on the host; only SSH is used.\n\n"
            f"The host must present the pinned host key ({pinned}); any other key is refused."
        ),
        "author": {"name": "mcpctl"},
        "icon": ICON,
        "server": {"type": "uv", "entry_point": ENTRY_POINT, "mcp_config": mcp_config()},
        "tools": [{"name": name, "description": text} for name, text in TOOLS],
        "keywords": ["sales", "analytics", "forecast", "ssh"],
        "license": "MIT",
        "compatibility": {
            "claude_desktop": ">=0.10.0",
            "platforms": ["darwin", "win32", "linux"],
            "runtimes": {"python": PYTHON_RANGE},
        },
        "user_config": user_config(profile),
    }


def bundle_config(profile: Profile, host_keys: list[str]) -> dict[str, Any]:
    """``bundle.json``: the profile's fixed part and the pinned host keys (what the form never shows)."""
    return {
        "format": BUNDLE_FORMAT,
        "profile": profile.name,
        "port": profile.port,
        "user": profile.user,
        "remote_dir": str(PurePosixPath(profile.remote_dir)),
        "columns": dict(profile.columns),
        "server_args": list(profile.server_args),
        "connect_timeout": profile.connect_timeout,
        "keepalive_interval": profile.keepalive_interval,
        "host_keys": host_keys,
    }


__all__ = ["BUNDLE_FILE", "ENTRY_POINT", "TOOLS", "bundle_config", "manifest", "user_config"]
