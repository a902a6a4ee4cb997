"""``mcpctl bundle``: the extension validated by the official MCPB CLI and run as Claude Desktop runs it.

The bundle is unpacked, its ``mcp_config`` has ``${__dirname}`` and the ``${user_config.*}`` values
substituted, and its command (uv, installing the toolkit from the bundle's pyproject) is started by the
MCP SDK client against the real sshd fixture, whose ``remote_dir`` is this checkout (its .venv runs the
server). A bundle pinned to another key is refused with the host-key sentence, never accepted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from provision.bundle import manifest as bundle_manifest
from provision.bundle.launch import bundle_profile, host_key_alias
from provision.cli import app
from provision.errors import ProfileError
from provision.profiles import Profile, known_hosts_path, save_profile
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.keys import generate_key, public_line

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample_sales_data.csv"
MCPB = REPO / "node_modules" / ".bin" / "mcpb"
BOUND = 180.0  # seconds: uv installs the toolkit on first start (from its cache here); never an expectation
_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _profile(sshd: Any, name: str = "sales", *, key_line: str | None = None) -> Profile:
    profile = Profile(
        name=name,
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity_file=sshd.client_key,
        remote_dir=str(REPO),
        data=[SAMPLE],
    )
    save_profile(profile)
    pin_host_key(known_hosts_path(name), sshd.host, sshd.port, key_line or sshd.host_key_line)
    return profile


def _bundle(name: str, out: Path) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["bundle", name, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _unpack(bundle: Path, into: Path) -> dict[str, Any]:
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(into)
    return json.loads((into / "manifest.json").read_text())  # type: ignore[no-any-return]


def _substitute(value: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda match: variables[match.group(1)], value)


def _as_claude_runs_it(
    manifest: dict[str, Any], folder: Path, settings: dict[str, Any]
) -> StdioServerParameters:
    """The server process Claude Desktop starts: mcp_config with its variables replaced."""
    config = manifest["server"]["mcp_config"]
    variables = {"__dirname": str(folder), "HOME": str(Path.home())}
    for key, spec in manifest["user_config"].items():
        value = settings.get(key, spec.get("default", ""))
        variables[f"user_config.{key}"] = _substitute(str(value), variables)
    uv = shutil.which("uv")
    assert config["command"] == "uv" and uv is not None
    env = {key: _substitute(value, variables) for key, value in config["env"].items()}
    return StdioServerParameters(
        command=uv,
        args=[_substitute(arg, variables) for arg in config["args"]],
        env={**os.environ, **env},
    )


# --------------------------------------------------------------------------------------- the archive


def test_the_bundle_holds_a_uv_server_its_pins_and_the_toolkit_only(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    _profile(sshd)
    written = _bundle("sales", tmp_path / "sales.mcpb")
    manifest = _unpack(tmp_path / "sales.mcpb", tmp_path / "x")
    assert manifest["server"]["type"] == "uv" and manifest["manifest_version"] == "0.4"
    assert set(manifest["user_config"]) == {"host", "port", "user", "key_file", "data_path"}
    assert manifest["user_config"]["data_path"]["default"] == f"{REPO}/data/{SAMPLE.name}"
    assert written["fingerprints"] and written["fingerprints"][0] in manifest["long_description"]
    carried = json.loads((tmp_path / "x" / "bundle.json").read_text())
    assert carried["host_keys"] == [" ".join(sshd.host_key_line.split()[:2])]
    pyproject = (tmp_path / "x" / "pyproject.toml").read_text()
    assert "asyncssh==" in pyproject and not re.search(r"pandas|duckdb|prophet|pyarrow", pyproject)
    assert (tmp_path / "x" / "icon.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not (tmp_path / "x" / "src" / "mcp_sales" / "server.py").exists()


def test_the_tool_list_is_the_servers() -> None:
    from mcp_sales.server import ServerConfig, build_server

    async def names() -> set[str]:
        server = build_server(ServerConfig(data_path=SAMPLE, prefetch=False))
        async with Client(server) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    assert {name for name, _ in bundle_manifest.TOOLS} == anyio.run(names)


def test_the_toolkit_reaches_only_the_shared_server_modules_the_bundle_carries() -> None:
    from provision.bundle.pack import SHARED_SERVER_MODULES
    from tests.packaging.dependency_sets import toolkit_files

    reached = {path.name for path in toolkit_files() if path.parent.name == "mcp_sales"}
    assert reached <= set(SHARED_SERVER_MODULES)


def test_a_profile_without_a_pinned_key_makes_no_bundle(mcpctl_home: Path, tmp_path: Path) -> None:
    save_profile(Profile(name="bare", host="h.example", user="me", remote_dir="/srv/bare"))
    result = CliRunner().invoke(app, ["bundle", "bare", "--out", str(tmp_path / "b.mcpb")])
    assert result.exit_code != 0 and not (tmp_path / "b.mcpb").exists()
    assert "has no pinned host key" in result.output and "mcpctl provision bare" in result.output


def test_form_values_override_the_profile_and_a_missing_host_is_one_sentence() -> None:
    config = {"format": 1, "profile": "sales", "port": 22, "user": "ann", "remote_dir": "/srv/s"}
    env = {"MCPCTL_BUNDLE_HOST": "db.example", "MCPCTL_BUNDLE_PORT": "2222.0", "MCPCTL_BUNDLE_DATA": "/d.csv"}
    profile = bundle_profile(config, {**env, "MCPCTL_BUNDLE_USER": "${user_config.user}"})
    assert (profile.host, profile.port, profile.user) == ("db.example", 2222, "ann")
    assert profile.host_key_alias == host_key_alias("sales") and profile.server_args == ["--data", "/d.csv"]
    with pytest.raises(ProfileError) as caught:
        bundle_profile(config, {})
    assert caught.value.message == "the extension has no host to connect to"
    with pytest.raises(ProfileError) as bad:
        bundle_profile(config, {**env, "MCPCTL_BUNDLE_PORT": "70000"})
    assert bad.value.hint == "correct it in the extension's settings in Claude Desktop"


# ------------------------------------------------------------------------ the official CLI, a real run


@pytest.mark.skipif(not MCPB.exists(), reason="the MCPB CLI is not installed (`make setup` runs `npm ci`)")
def test_the_official_mcpb_cli_validates_the_manifest(sshd: Any, mcpctl_home: Path, tmp_path: Path) -> None:
    _profile(sshd)
    _bundle("sales", tmp_path / "sales.mcpb")
    _unpack(tmp_path / "sales.mcpb", tmp_path / "x")
    done = subprocess.run(
        [str(MCPB), "validate", str(tmp_path / "x" / "manifest.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "Manifest schema validation passes" in done.stdout, (
        done.stdout + done.stderr
    )


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="the sshd fixture is Linux only")
async def test_the_bundle_runs_as_claude_desktop_runs_it_and_answers(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    _profile(sshd)
    _bundle("sales", tmp_path / "sales.mcpb")
    folder = tmp_path / "Claude Extensions" / "mcpctl-sales-sales"  # a space, as on macOS and Windows
    manifest = _unpack(tmp_path / "sales.mcpb", folder)
    params = _as_claude_runs_it(manifest, folder, {"key_file": str(sshd.client_key)})
    with anyio.fail_after(BOUND):
        async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {name for name, _ in bundle_manifest.TOOLS} <= tools
            listed = await client.call_tool("list_operations", {})
            assert not listed.is_error and listed.structured_content["operations"]


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="the sshd fixture is Linux only")
async def test_a_bundle_pinned_to_another_key_refuses_the_host(
    sshd: Any, mcpctl_home: Path, tmp_path: Path
) -> None:
    _profile(sshd, key_line=public_line(generate_key("someone-else")))
    _bundle("sales", tmp_path / "sales.mcpb")
    manifest = _unpack(tmp_path / "sales.mcpb", tmp_path / "x")
    params = _as_claude_runs_it(manifest, tmp_path / "x", {"key_file": str(sshd.client_key)})
    caught: BaseException | None = None
    with anyio.fail_after(BOUND):
        try:
            async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
                await client.list_tools()
        except Exception as exc:  # the SDK may wrap the answer in an exception group
            caught = exc
    refused = [error for error in _leaves(caught) if isinstance(error, MCPError)]
    assert refused, f"the bundle connected to a host with another key ({caught!r})"
    data = refused[0].error.data
    assert isinstance(data, dict) and data["error"] == "HostKeyError", data
    assert "CHANGED" in data["message"] and "sales.mcpctl-bundle" in data["message"]


def _leaves(error: BaseException | None) -> list[BaseException]:
    inner = getattr(error, "exceptions", None)  # an exception group (its own class only on 3.11+)
    if isinstance(inner, tuple):
        return [leaf for each in inner for leaf in _leaves(each)]
    return [] if error is None else [error]
