"""The Dockerfile and the install script it runs: the script's steps for each mode the Dockerfile uses,
a real run in a scratch directory, and the image's health check and command agreeing with what ECS is
told. (No container engine runs here; `make lint` runs hadolint over the Dockerfile.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.deploy.model import CONTAINER_PORT, HEALTH_COMMAND, server_command

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "container-install.sh"
DOCKERFILE = (REPO / "Dockerfile").read_text()
UV = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
# What the Dockerfile copies into its build stage before running the script.
PROJECT_FILES = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "mcp_sales",
    "provision",
    "scripts/container-install.sh",
)


def script_runs() -> list[list[str]]:
    """The arguments of every ``container-install.sh`` run in the Dockerfile (continuations joined)."""
    text = DOCKERFILE.replace("\\\n", " ")
    runs = re.findall(r"sh scripts/container-install\.sh ([^\n&]*)", text)
    return [shlex.split(args) for args in runs]


def scratch_project(root: Path) -> Path:
    for name in PROJECT_FILES:
        source, target = REPO / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".mcp_sales_cache"))
        else:
            shutil.copy2(source, target)
    return root


def run_script(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(cwd / "scripts" / "container-install.sh"), *args],
        cwd=cwd,
        env={**os.environ, "UV": UV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_dockerfile_runs_every_mode_and_each_plans_the_locked_install(tmp_path: Path) -> None:
    runs = script_runs()
    assert [r[0] for r in runs] == ["deps", "project", "lambda"]
    project = scratch_project(tmp_path)
    for args in runs:
        result = run_script(project, "--dry-run", *args)
        assert result.returncode == 0, result.stderr
        commands = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
        uv_commands = [c for c in commands if c.startswith(UV)]
        assert uv_commands and all("--frozen" in c or " pip install " in c for c in uv_commands)
        locked = [c for c in uv_commands if " sync " in c or " export " in c]
        assert locked and all("--no-dev --group server" in c for c in locked)
        if args[0] != "deps":
            assert "Prophet(" in result.stdout and ".fit(frame)" in result.stdout
    assert "--no-editable" in run_script(project, "--dry-run", "project").stdout


def test_an_unknown_mode_is_refused_with_the_usage(tmp_path: Path) -> None:
    result = run_script(scratch_project(tmp_path), "everything")
    assert result.returncode == 2 and "usage: container-install.sh" in result.stderr


def _link_copy(source: Path, target: Path) -> None:
    """A copy of the synced environment made of hard links (fast, and uv replaces files, never edits them)."""
    try:
        shutil.copytree(source, target, symlinks=True, copy_function=os.link)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)


def test_the_install_script_installs_and_checks_the_server_in_a_scratch_directory(tmp_path: Path) -> None:
    # The same steps the image runs (deps, then project), offline from uv's cache. Starting from a
    # linked copy of this checkout's environment keeps it fast: uv removes the dev group, installs the
    # project as a plain package and compiles, then the script imports the server and fits Prophet.
    project = scratch_project(tmp_path / "app")
    venv = project / ".venv"
    _link_copy(Path(sys.prefix), venv)
    env = {
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_OFFLINE": "1",
        "UV_LINK_MODE": "hardlink",
        "UV_PYTHON": sys.executable,
        "UV_COMPILE_BYTECODE": "0",  # the image compiles; here it would only cost time
    }
    for mode in ("deps", "project"):
        result = run_script(project, mode, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "server: imports ok" in result.stdout and "prophet: a fit ran" in result.stdout
    python = venv / "bin" / "python"
    probe = "import mcp_sales, importlib.util as u; print(mcp_sales.__file__, u.find_spec('pytest'))"
    where = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path
    ).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == "None"  # installed, not editable; no dev group
    assert (venv / "bin" / "mcp-sales").exists()


def test_the_image_health_check_and_command_match_what_ecs_is_told() -> None:
    stages = re.findall(r"^FROM \S+ AS (\w+)$", DOCKERFILE, re.M)
    assert stages[-1] == "server"  # `docker build .` without --target builds the last stage
    server = DOCKERFILE.split(" AS server\n", 1)[1]
    (cmd,) = [json.loads(found) for found in re.findall(r"^CMD (\[.*\])$", server, re.M)]
    healthcheck = re.search(r"HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])", server)
    assert healthcheck, "the server stage has no exec-form HEALTHCHECK"
    assert json.loads(healthcheck.group(1)) == ["python", "-c", HEALTH_COMMAND]
    ecs = server_command("s3://b/k")
    assert cmd[: cmd.index("--cache-dir")] == ecs[: ecs.index("--data")]
    assert cmd[cmd.index("--cache-dir") + 1] == ecs[ecs.index("--cache-dir") + 1]
    assert f"EXPOSE {CONTAINER_PORT}" in DOCKERFILE
    assert re.search(r"^USER 10001", DOCKERFILE, re.M) and 'ENTRYPOINT ["mcp-sales"]' in DOCKERFILE
    assert not re.search(r"(?i)(api[_-]?key|secret|password)\s*=", DOCKERFILE.split("ENV", 1)[1])


@pytest.mark.parametrize("pattern", ["*", "!mcp_sales/", "!uv.lock"])
def test_the_build_context_is_an_allowlist(pattern: str) -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert pattern in lines
