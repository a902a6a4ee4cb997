"""The remote environment: probe the host, install uv privately, install the server set, self-check.

Everything runs through one :class:`~provision.ssh.remote.Remote` connection with absolute paths, so
nothing depends on the remote PATH or on shell rc files. A stamp file records what was installed
(lock hash, uv version, python); when nothing changed, a re-run costs one probe and says "up to date".
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from provision.errors import RemoteError
from provision.layout import SERVER_MODULE, RemoteLayout
from provision.shell import env_prefix

if TYPE_CHECKING:
    from provision.ssh.remote import Remote

# The dependency group of pyproject.toml a host installs: the server and nothing of the toolkit.
SERVER_GROUP = "server"
# The uv release installed on remote hosts; bumped deliberately, like the lock file.
UV_VERSION = "0.13.9"
MIN_PYTHON = (3, 10)
# Prophet + DuckDB + pandas wheels and the venv take about 1 GB; leave room for data and caches.
MIN_FREE_MB = 1500

# One round trip for everything we need to know. Output is KEY=VALUE lines after a marker, so text a
# noisy rc file prints before our command runs is ignored.
_PROBE_MARKER = "__mcpctl_probe__"
_PROBE_SCRIPT = f"""
echo {_PROBE_MARKER}
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
if [ -r /etc/os-release ]; then . /etc/os-release; echo "distro=${{PRETTY_NAME:-unknown}}"; fi
py=$(command -v python3 || true)
echo "python=$py"
if [ -n "$py" ]; then
  echo "python_version=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"
  echo "has_venv=$("$py" -c 'import venv, ensurepip; print(1)' 2>/dev/null || echo 0)"
fi
d="$1"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "free_kb=$(df -Pk "$d" | awk 'NR==2 {{print $4}}')"
echo "writable=$([ -w "$d" ] && echo 1 || echo 0)"
"""

Phase = Callable[[str, str], None]


@dataclass(frozen=True)
class HostFacts:
    """What the probe found on the remote host."""

    os: str
    arch: str
    distro: str
    python: str
    python_version: tuple[int, ...]
    has_venv: bool
    free_mb: int
    writable: bool


@dataclass
class BootstrapReport:
    """What a bootstrap did, phase by phase, for the CLI to render."""

    facts: HostFacts | None = None
    phases: list[tuple[str, float, str]] = field(default_factory=list)
    changed: bool = False
    check_output: str = ""

    @property
    def up_to_date(self) -> bool:
        return not self.changed


def parse_probe(output: str) -> HostFacts:
    """Parse the probe's KEY=VALUE output (anything before the marker is rc-file noise).

    Raises:
        RemoteError: If the output has no marker (the probe did not run).
    """
    if _PROBE_MARKER not in output:
        raise RemoteError(
            "the host probe printed nothing we understand", hint="check that /bin/sh works there"
        )
    values: dict[str, str] = {}
    for line in output.split(_PROBE_MARKER, 1)[1].splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    version = tuple(int(p) for p in values.get("python_version", "").split(".") if p.isdigit())
    free_kb = values.get("free_kb", "")
    return HostFacts(
        os=values.get("os", "unknown"),
        arch=values.get("arch", "unknown"),
        distro=values.get("distro", "unknown"),
        python=values.get("python", ""),
        python_version=version,
        has_venv=values.get("has_venv") == "1",
        free_mb=int(free_kb) // 1024 if free_kb.isdigit() else -1,
        writable=values.get("writable") == "1",
    )


def check_facts(facts: HostFacts, remote_dir: str) -> None:
    """Refuse a host we cannot install on, saying what to change there.

    Raises:
        RemoteError: For a non-Linux host, a missing or old python3, no venv module, too little disk,
            or a remote directory whose nearest existing parent is not writable.
    """
    if facts.os != "Linux":
        raise RemoteError(f"the host runs {facts.os}, not Linux", hint="mcpctl installs only on Linux hosts")
    wanted = ".".join(map(str, MIN_PYTHON))
    if not facts.python:
        raise RemoteError(
            "the host has no python3",
            hint=f"install Python {wanted}+ there "
            "(Debian/Ubuntu: sudo apt-get install -y python3 python3-venv) and re-run",
        )
    if facts.python_version < MIN_PYTHON:
        found = ".".join(map(str, facts.python_version)) or "unknown"
        raise RemoteError(
            f"the host's python3 is {found}, older than {wanted}",
            hint="install a newer python3 there and re-run",
        )
    if not facts.has_venv:
        raise RemoteError(
            "the host's python3 has no venv/ensurepip module",
            hint="install it there (Debian/Ubuntu: sudo apt-get install -y python3-venv) and re-run",
        )
    if not facts.writable:
        raise RemoteError(
            f"{remote_dir} cannot be created by this user",
            hint="choose a writable remote_dir in the profile",
        )
    if 0 <= facts.free_mb < MIN_FREE_MB:
        raise RemoteError(
            f"only {facts.free_mb} MB free on the disk holding {remote_dir}",
            hint=f"mcpctl needs about {MIN_FREE_MB} MB: free some space or grow the disk",
        )


def lock_fingerprint(project_root: Path, python_version: Sequence[int]) -> str:
    """Hash what decides the remote environment: the lock, pyproject, uv and python versions."""
    digest = hashlib.sha256()
    for name in ("uv.lock", "pyproject.toml"):
        digest.update((project_root / name).read_bytes())
    digest.update(f"uv={UV_VERSION};python={'.'.join(map(str, python_version[:2]))}".encode())
    return digest.hexdigest()[:16]


async def probe(remote: Remote, remote_dir: str) -> HostFacts:
    """Probe OS, architecture, python3, free disk and writability in one command.

    Raises:
        RemoteError: If the probe cannot run.
    """
    result = await remote.run(["/bin/sh", "-c", _PROBE_SCRIPT, "probe", remote_dir])
    return parse_probe(result.stdout)


async def _read_stamp(remote: Remote, stamp: str) -> dict[str, str]:
    result = await remote.run(["cat", stamp], check=False)
    if result.exit_status != 0:
        return {}
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    except (json.JSONDecodeError, IndexError):
        return {}
    return data if isinstance(data, dict) else {}


async def ensure_uv(remote: Remote, facts: HostFacts, layout: RemoteLayout) -> bool:
    """Install uv ``UV_VERSION`` into a private venv (never the system's); return True if installed.

    Raises:
        RemoteError: If the venv or the pip install fails (the message has pip's last lines).
    """
    found = await remote.run([str(layout.uv), "--version"], check=False)
    if found.exit_status == 0 and UV_VERSION in found.stdout.split():
        return False
    await remote.run([facts.python, "-m", "venv", "--clear", str(layout.tools)], timeout=300)
    await remote.run(
        [
            str(layout.tools_python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"uv=={UV_VERSION}",
        ],
        timeout=600,
    )
    return True


# Makes the synced code importable by the venv's python (``-m mcp_sales``), as an editable install would,
# without installing the project itself and with it the laptop toolkit's dependencies.
_CODE_PATH_FILE = "mcpctl-code.pth"
_WRITE_CODE_PATH = (
    "import sys, sysconfig, pathlib; "
    "pathlib.Path(sysconfig.get_path('purelib'), sys.argv[1]).write_text(sys.argv[2] + '\\n')"
)


def install_argv(layout: RemoteLayout, python: str) -> list[str]:
    """The install command: exactly the lock's ``server`` group into ``remote_dir/.venv``, bytecode compiled.

    Only the group, not the project: the project's own dependencies are the laptop toolkit (asyncssh,
    boto3, typer, ...), which the server never imports. Bytecode compiled at install time saves 1-3 s
    on every server launch, inside Claude's 60 s budget.
    """
    env = {
        "UV_COMPILE_BYTECODE": "1",
        "UV_PROJECT_ENVIRONMENT": str(layout.venv),
        "UV_PYTHON": python,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        # The platform's CA store, not uv's bundled roots: hosts behind a TLS-inspecting proxy trust
        # their own CA there, and it is what pip and curl on the host already use.
        "UV_SYSTEM_CERTS": "1",
    }
    sync = ["sync", "--frozen", "--only-group", SERVER_GROUP, "--project", str(layout.root)]
    return [*env_prefix(env), str(layout.uv), *sync]


async def install_environment(remote: Remote, facts: HostFacts, layout: RemoteLayout) -> None:
    """Install the server set (:func:`install_argv`) and point the venv at the synced code.

    Raises:
        RemoteError: If uv fails (the message carries uv's last lines).
    """
    await remote.run(install_argv(layout, facts.python), timeout=1800)
    await remote.run([str(layout.python), "-c", _WRITE_CODE_PATH, _CODE_PATH_FILE, str(layout.root)])


async def self_check(remote: Remote, layout: RemoteLayout, server_args: Sequence[str]) -> str:
    """Run ``python -m mcp_sales check`` remotely with the server's own arguments; return its output.

    Raises:
        RemoteError: If the check fails (its message says what is wrong with the data or environment).
    """
    result = await remote.run(
        [str(layout.python), "-m", SERVER_MODULE, "check", *server_args], check=False, timeout=300
    )
    if result.exit_status != 0:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        reason = lines[-1].rstrip(".") if lines else "no output"
        raise RemoteError(
            f"the server's self-check failed on the host: {reason}",
            hint="fix the data or mapping in the profile, then run `mcpctl provision` again",
        )
    return result.stdout


async def bootstrap(
    remote: Remote,
    *,
    remote_dir: str,
    project_root: Path,
    server_args: Sequence[str],
    sync_code: Callable[[], Awaitable[bool]] | None = None,
    force: bool = False,
    on_phase: Phase | None = None,
) -> BootstrapReport:
    """Bring the host to the locked environment and prove the server starts there.

    Args:
        remote: An open connection.
        remote_dir: Absolute remote directory of the profile.
        project_root: Local checkout holding ``pyproject.toml`` and ``uv.lock``.
        server_args: The server's data and column arguments, as the client entry will pass them.
        sync_code: Syncs code and data; returns whether any file changed.
        force: Re-install even when the stamp says the environment is current.
        on_phase: Called with (phase, detail) as each phase ends.

    Raises:
        RemoteError: If the host does not qualify or a step fails.
    """
    report = BootstrapReport()
    layout = RemoteLayout.of(remote_dir)

    def done(phase: str, started: float, detail: str) -> None:
        elapsed = time.perf_counter() - started
        report.phases.append((phase, elapsed, detail))
        if on_phase is not None:
            on_phase(phase, f"{detail} ({elapsed:.2f} s)")

    started = time.perf_counter()
    facts = await probe(remote, remote_dir)
    check_facts(facts, remote_dir)
    report.facts = facts
    py = ".".join(map(str, facts.python_version))
    done("probe", started, f"{facts.distro}, {facts.arch}, python {py}, {facts.free_mb} MB free")

    if sync_code is not None:
        started = time.perf_counter()
        changed = await sync_code()
        report.changed |= bool(changed)
        done("sync", started, "files updated" if changed else "up to date")

    fingerprint = lock_fingerprint(project_root, facts.python_version)
    stamp = await _read_stamp(remote, str(layout.stamp))
    current = stamp.get("fingerprint") == fingerprint
    if current and not force:
        venv_ok = (await remote.run(["test", "-x", str(layout.python)], check=False)).exit_status == 0
        current = venv_ok

    started = time.perf_counter()
    if current and not force:
        done("environment", started, "up to date")
    else:
        installed_uv = await ensure_uv(remote, facts, layout)
        await install_environment(remote, facts, layout)
        await remote.run(["mkdir", "-p", str(layout.state)])
        await remote.run(
            ["/bin/sh", "-c", 'cat > "$1.tmp" && mv -f "$1.tmp" "$1"', "stamp", str(layout.stamp)],
            input=json.dumps({"fingerprint": fingerprint, "uv": UV_VERSION, "python": py}) + "\n",
        )
        report.changed = True
        done("environment", started, f"uv {UV_VERSION}{' installed, ' if installed_uv else ', '}venv synced")

    if report.changed or force:
        started = time.perf_counter()
        report.check_output = await self_check(remote, layout, server_args)
        done("check", started, "server starts and answers")
    return report
