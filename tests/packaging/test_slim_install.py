"""A laptop install: the wheel without extras, in a fresh venv, at the lock's versions.

The wheel is built from this checkout and installed with the lock's toolkit versions as constraints
(``uv export`` without the server group), from uv's cache when it holds them. Then, from that venv
only: no distribution of the server set is present, every ``provision`` module imports, and the
commands a laptop runs work: ``--help``, ``--version``, ``sandbox up``, ``config claude``, ``connect``
(an MCP session through the sandbox to this checkout's server) and ``doctor``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.packaging import dependency_sets as sets

BOUND = 120.0  # seconds: any one step (an install from the cache, a session), never an expectation
SAMPLE = sets.REPO / "data" / "sample_sales_data.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="the sandbox is POSIX only"),
]


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BOUND, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv[:4]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


def install(argv: list[str]) -> None:
    """Offline from uv's cache first (no network in a test when the cache has it), else online."""
    offline = subprocess.run([*argv, "--offline"], capture_output=True, text=True, timeout=BOUND, check=False)
    if offline.returncode != 0:
        run(argv)


@dataclass(frozen=True)
class Slim:
    venv: Path
    bin: Path

    def mcpctl(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run([str(self.bin / "mcpctl"), *args], env=env)


@pytest.fixture(scope="module")
def slim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slim]:
    work = tmp_path_factory.mktemp("slim")
    dist = work / "dist"
    install([*uv(), "build", "--wheel", "--quiet", "--out-dir", str(dist), str(sets.REPO)])
    (wheel,) = dist.glob("mcpctl-*.whl")
    constraints = work / "constraints.txt"
    toolkit_only = ["--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project", "--quiet"]
    run([*uv(), "export", *toolkit_only, "--project", str(sets.REPO), "--output-file", str(constraints)])
    venv = work / "venv"
    run([*uv(), "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    install([*uv(), "pip", "install", "--quiet", "--python", str(python), "-c", str(constraints), str(wheel)])
    yield Slim(venv, venv / "bin")


def installed(slim: Slim) -> set[str]:
    listing = run([*uv(), "pip", "list", "--format", "json", "--python", str(slim.bin / "python")])
    return {sets.normalize(item["name"]) for item in json.loads(listing.stdout)}


def test_the_slim_install_has_the_toolkit_and_nothing_of_the_server(slim: Slim) -> None:
    present = installed(slim)
    assert {"mcpctl", "asyncssh", "typer", "boto3", "mcp"} <= present
    server_only = sets.server() - sets.toolkit()
    assert present & server_only == set()
    assert present - {"mcpctl"} <= sets.toolkit()  # nothing from outside the lock's toolkit set


def test_every_toolkit_module_imports_in_the_slim_install(slim: Slim) -> None:
    names = sorted(
        ".".join(path.relative_to(sets.REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in sets.toolkit_files()
        if path.name != "__main__.py"  # a program, not a module: importing it runs it
    )
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    run([str(slim.bin / "python"), "-c", script, *names], cwd=slim.venv)  # not the checkout's modules


def test_help_and_version_from_the_slim_install(slim: Slim) -> None:
    assert "connect" in slim.mcpctl("--help").stdout
    assert slim.mcpctl("--version").stdout.strip() == sets.pyproject()["project"]["version"]


@pytest.mark.anyio
async def test_config_connect_and_doctor_through_the_sandbox_from_the_slim_install(
    slim: Slim, mcpctl_home: Path, tmp_path: Path
) -> None:
    from provision.profiles import Profile, known_hosts_path, save_profile
    from provision.ssh import sandbox
    from provision.ssh.hostkeys import pin_host_key

    env = {**os.environ, "MCPCTL_HOME": str(mcpctl_home)}
    slim.mcpctl("sandbox", "up", env=env)  # the sandbox server runs from the slim install too
    try:
        box = sandbox.status()
        assert box is not None
        # The sandbox runs here, so the host's remote_dir can be this checkout: its .venv runs the server.
        save_profile(
            Profile(
                name="box",
                kind="sandbox",
                host=box.host,
                port=box.port,
                user=box.user,
                identity_file=box.client_key,
                remote_dir=str(sets.REPO),
                data=[SAMPLE],
            )
        )
        pin_host_key(known_hosts_path("box"), box.host, box.port, box.host_key_line)
        config = tmp_path / "claude_desktop_config.json"
        slim.mcpctl("config", "claude", "box", "--config-path", str(config), env=env)
        entry = json.loads(config.read_text())["mcpServers"]["sales-box"]
        assert Path(entry["command"]).parent == slim.bin and entry["args"][:1] == ["connect"]

        params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env)
        with anyio.fail_after(BOUND):
            async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
                listed = await client.call_tool("list_operations", {})
                assert not listed.is_error and listed.structured_content["operations"]

        report = slim.mcpctl("doctor", "box", "--config-path", str(config), env=env)
        assert "needs attention" not in report.stdout
    finally:
        slim.mcpctl("sandbox", "down", env=env)
