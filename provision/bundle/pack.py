"""Write the ``.mcpb`` archive: manifest, icon, ``bundle.json``, the launcher and the toolkit's code.

The archive holds the toolkit's own Python files (``provision`` and the three ``mcp_sales`` modules
it shares with the server) under ``src/``, and a ``pyproject.toml`` that names the toolkit's
dependencies at the versions installed here: what uv installs for the extension, never the server's
data stack. Nothing secret goes in: host keys are public, and the key file is only a path the user
gives in the form.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import provision
from provision.bundle.icon import icon_png
from provision.bundle.manifest import BUNDLE_FILE, ENTRY_POINT, ICON, bundle_config, extension_name, manifest
from provision.errors import ProfileError
from provision.files import atomic_write
from provision.profiles import Profile, known_hosts_path

DISTRIBUTION = "mcpctl"
# What the toolkit reaches of the server's package (tests/packaging holds provision to these).
SHARED_SERVER_MODULES = ("__init__.py", "errors.py", "mapping.py")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")

LAUNCHER = '''"""Claude Desktop runs this through uv: the mcpctl toolkit's `connect` for this extension."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from provision.bundle.launch import main  # noqa: E402  (the path above comes first)

sys.exit(main([str(ROOT / "bundle.json")]))
'''


@dataclass(frozen=True)
class BundleResult:
    """A written bundle: where, its manifest, the pinned keys' fingerprints, its size in bytes."""

    path: Path
    manifest: dict[str, Any]
    fingerprints: list[str]
    size: int


def pinned_host_keys(profile: Profile) -> list[str]:
    """The public key lines pinned for ``profile`` (``ssh-ed25519 AAAA...``), without host names.

    Raises:
        ProfileError: Nothing is pinned (the bundle could not check the host), or the file is unreadable.
    """
    path = known_hosts_path(profile.name)
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}", hint="check the file") from exc
    keys: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith(("#", "@")):
            key = f"{fields[1]} {fields[2]}"
            if key not in keys:
                keys.append(key)
    if not keys:
        raise ProfileError(
            f"profile '{profile.name}' has no pinned host key, so the extension could not check the host",
            hint=f"pin it first with `mcpctl provision {profile.name}`",
        )
    return keys


def toolkit_requirements() -> tuple[list[str], list[str]]:
    """mcpctl's own requirements (no extra), and constraints pinning them to the versions installed here.

    The pins hold for this Python minor only (a version may not exist for another one: the lock picks
    per Python); elsewhere the declared ranges decide.
    """
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    requirements: list[str] = []
    pins: list[str] = []
    for requirement in declared:
        match = _REQUIREMENT.match(requirement)
        if match is None or "extra" in (match.group(4) or ""):
            continue
        requirements.append(requirement)
        # One not installed here is for another platform or Python (its marker says so): no pin.
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            name = match.group(1)
            pins.append(f"{name}=={importlib.metadata.version(name)}; python_version == '{python}'")
    return requirements, pins


def pyproject_text(profile: Profile, version: str) -> str:
    import tomlkit

    requirements, pins = toolkit_requirements()
    document = {
        "project": {
            "name": extension_name(profile),
            "version": version,
            "description": f"The mcpctl toolkit, to run `connect` for '{profile.name}' from Claude Desktop.",
            "requires-python": ">=3.10",
            "dependencies": requirements,
        },
        # The code is on sys.path through server/main.py, not installed.
        "tool": {"uv": {"package": False, "constraint-dependencies": pins}},
    }
    return tomlkit.dumps(document)


def code_files() -> Iterator[tuple[str, Path]]:
    """(name in the archive, file here) of the toolkit's Python files."""
    package = Path(provision.__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        yield "src/provision/" + path.relative_to(package).as_posix(), path
    server = package.parent / "mcp_sales"
    for name in SHARED_SERVER_MODULES:
        yield f"src/mcp_sales/{name}", server / name


def write_bundle(profile: Profile, out: Path) -> BundleResult:
    """Write the extension for ``profile`` to ``out`` (replaced atomically).

    Raises:
        ProfileError: Nothing is pinned for the profile, or ``out`` cannot be written.
        HostKeyError: A pinned line is not a public key.
    """
    from provision.ssh.hostkeys import parse_host_key

    host_keys = pinned_host_keys(profile)
    fingerprints = [str(parse_host_key(line).fingerprint) for line in host_keys]
    version = provision.__version__
    described = manifest(profile, version=version, fingerprints=fingerprints)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(described, indent=2) + "\n")
        archive.writestr(ICON, icon_png())
        archive.writestr(BUNDLE_FILE, json.dumps(bundle_config(profile, host_keys), indent=2) + "\n")
        archive.writestr("pyproject.toml", pyproject_text(profile, version))
        archive.writestr(ENTRY_POINT, LAUNCHER)
        for name, path in code_files():
            archive.write(path, name)
    data = buffer.getvalue()
    try:
        atomic_write(out, data, mode=0o644)  # an installer to hand around: nothing secret in it
    except OSError as exc:
        raise ProfileError(
            f"cannot write {out}: {exc.strerror or exc}", hint="choose another --out or folder"
        ) from exc
    return BundleResult(out, described, fingerprints, len(data))
