"""The HTTP server on a host, end to end: real sshd, the real server, real sockets on 127.0.0.1.

The host is the sshd fixture (this machine, without systemd), so ``provision --http`` installs the
background-process service, exactly the sandbox's path. The remote directory is a temporary one whose
``.venv`` is this checkout's (nothing is bootstrapped). The server is reached only through SSH: the
``mcpctl tunnel`` command in a subprocess, ``mcpctl status``, and ``mcpctl connect`` driven by the SDK's
stdio client, across a restart of the server.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from typer.testing import CliRunner

from provision.cli import app
from provision.host import http_install
from provision.host.http_keys import read_key
from provision.host.http_profile import enable_http
from provision.host.http_service import HttpService
from provision.profiles import HttpSettings, Profile, known_hosts_path, load_profile, save_profile
from provision.ssh.hostkeys import pin_host_key
from provision.ssh.profile_target import target_for
from provision.ssh.remote import connect

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample_sales_data.csv"
BOUND = 120.0  # seconds: an upper bound on any single step, never an expectation
NAME = "web"


@dataclass
class Served:
    home: Path
    profile: Profile
    service: HttpService

    def env(self) -> dict[str, str]:
        return {**os.environ, "MCPCTL_HOME": str(self.home)}

    def pid(self) -> int:
        return int(Path(str(self.service.pid_path)).read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(sshd: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Profile ``web`` on the sshd fixture with its HTTP server installed by ``enable_http``."""
    root = tmp_path_factory.mktemp("http-host")
    home, remote = root / "home", root / "srv"
    (remote / "data").mkdir(parents=True)
    (remote / ".venv").symlink_to(REPO / ".venv")
    shutil.copy(SAMPLE, remote / "data" / SAMPLE.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCPCTL_HOME", str(home))
        profile = Profile(
            name=NAME,
            host=sshd.host,
            port=sshd.port,
            user=sshd.user,
            identity_file=sshd.client_key,
            remote_dir=str(remote),
            data=[SAMPLE],
            server_args=["--cache-dir", str(root / "cache")],
            http=HttpSettings(port=_free_port()),
        )
        save_profile(profile)
        pin_host_key(known_hosts_path(NAME), sshd.host, sshd.port, sshd.host_key_line)
        profile, health = anyio.run(_bounded_enable, profile)
        assert health.ok, health
        served = Served(home, profile, HttpService.of(profile))
        try:
            yield served
        finally:
            anyio.run(_stop, profile)


async def _bounded_enable(profile: Profile) -> tuple[Profile, Any]:
    with anyio.fail_after(BOUND):
        return await enable_http(profile)


async def _stop(profile: Profile) -> None:
    with anyio.fail_after(BOUND):
        async with connect(target_for(profile)) as remote:
            await http_install.stop_process(remote, HttpService.of(profile))


def test_provision_http_records_the_service_and_keeps_the_key_private(served: Served) -> None:
    saved = load_profile(NAME)
    assert saved.http is not None and saved.http.service == "process"  # no systemd on this host
    remote_key = Path(str(served.service.key_path))
    assert remote_key.read_text().strip() == read_key(saved)
    assert remote_key.stat().st_mode & 0o777 == 0o600
    assert Path(str(served.service.directory)).stat().st_mode & 0o777 == 0o700
    assert read_key(saved) not in (served.home / "config" / "profiles" / f"{NAME}.toml").read_text()
    # Bound to loopback only: the server's own socket is 127.0.0.1:PORT.
    with socket.create_connection(("127.0.0.1", served.service.port), timeout=5):
        pass


def test_status_reports_the_state_and_health_through_ssh(served: Served) -> None:
    result = CliRunner().invoke(app, ["status", NAME, "--json"], env={"MCPCTL_HOME": str(served.home)})
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["service"] == "process" and status["state"] == "running"
    assert status["health"]["status"] == 200 and status["health"]["body"]["status"] == "ok"


def test_tunnel_reaches_the_server_with_only_ssh_and_ends_on_ctrl_c(served: Served) -> None:
    mcpctl = Path(sys.executable).parent / "mcpctl"
    process = subprocess.Popen(
        [str(mcpctl), "tunnel", NAME, "--local-port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=served.env(),
        text=True,
    )
    try:
        assert process.stderr is not None
        url = _read_url(process.stderr)
        assert url is not None and f":{served.service.port}/" not in url  # a port of this side
        key = read_key(served.profile)
        with httpx2.Client(timeout=30, trust_env=False) as client:
            assert client.get(url.removesuffix("/mcp") + "/health").json()["status"] == "ok"
            initialize = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
            headers = {"accept": "application/json, text/event-stream", "mcp-method": "initialize"}
            refused = client.post(url, json=initialize, headers=headers)
            assert refused.status_code == 401
            answered = client.post(url, json=initialize, headers={**headers, "x-api-key": key})
            assert answered.status_code == 200 and "mcp-sales" in answered.text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=BOUND) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=BOUND)


def _read_url(stream: IO[str]) -> str | None:
    """The URL the tunnel prints once its forward listens (bounded: the tunnel may never get there)."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        deadline = time.monotonic() + BOUND
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            line = stream.readline()
            if not line:
                return None
            if found := re.search(r"(http://127\.0\.0\.1:\d+/mcp)", line):
                return found.group(1)
    return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.anyio
async def test_connect_over_http_survives_a_server_restart(served: Served) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "provision.connect", NAME], env=served.env()
    )
    with anyio.fail_after(BOUND * 3):
        async with Client(params, mode="legacy", read_timeout_seconds=BOUND) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"top_n_products", "forecast_sales"} <= tools
            first = await client.call_tool("list_operations", {})
            assert not first.is_error
            city = first.structured_content["operations"][0]["name"]

            # A restart while a call runs: the server is killed while it fits the forecast.
            outcome: dict[str, Any] = {}

            async def forecast() -> None:
                try:
                    outcome["result"] = await client.call_tool(
                        "forecast_sales", {"operation": city, "periods": 3}
                    )
                except Exception as exc:  # the proxy's error answer arrives as an MCP error
                    outcome["error"] = exc

            async with anyio.create_task_group() as group:
                group.start_soon(forecast)
                killed = served.pid()
                with anyio.fail_after(BOUND):
                    while not _children(killed) and not outcome:  # noqa: ASYNC110 - /proc has no events
                        await anyio.sleep(0.02)
                assert not outcome, "the forecast ended before the server could be killed under it"
                os.kill(killed, signal.SIGKILL)
                _, health = await enable_http(served.profile)  # the re-provision starts a new one
                assert health.ok and served.pid() != killed
            error = outcome.get("error")
            result = outcome.get("result")
            # Either the proxy said the call may not have run, or (a read-only call) it was sent again.
            assert (error is not None and "dropped" in str(error)) or (
                result is not None and not result.is_error
            ), outcome
            # The next call is answered by the new server (the handshake was replayed to it).
            after = await client.call_tool("top_n_products", {"n": 2, "operation": city})
            assert not after.is_error and len(after.structured_content["products"]) == 2


@pytest.mark.anyio
async def test_connect_reaches_a_deployment_by_its_url_with_its_key(served: Served, tmp_path: Path) -> None:
    from provision.deploy.record import Deployment, save_deployment

    key_file = tmp_path / "deployed.key"
    key_file.write_text(read_key(served.profile) + "\n")
    key_file.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCPCTL_HOME", str(served.home))
        save_deployment(
            Deployment(
                name="deployed",
                shape="ecs",
                region="us-east-1",
                url=f"http://127.0.0.1:{served.service.port}/mcp",  # this machine: the host is here
                api_key_file=key_file,
                image="example/mcp-sales:1",
                data="s3://bucket/sales.csv",
            )
        )
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "provision.connect", "deployed"], env=served.env()
    )
    with anyio.fail_after(BOUND):
        async with Client(params, read_timeout_seconds=BOUND) as client:
            result = await client.call_tool("list_operations", {})
            assert not result.is_error and result.structured_content["operations"]
    # A wrong key: the proxy gives up at once with the reason instead of retrying.
    key_file.write_text("x" * 43 + "\n")
    initialize = (
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        b'"capabilities":{},"clientInfo":{"name":"t","version":"0"}}}\n'
    )
    with anyio.fail_after(BOUND):
        async with await anyio.open_process(
            [sys.executable, "-m", "provision.connect", "deployed"], env=served.env()
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send(initialize)  # stdin stays open: the answer is the give-up
            answer = json.loads((await process.stdout.receive()).splitlines()[0])
            assert await process.wait() == 2  # a profile error: waiting cannot fix a wrong key
    assert "refused the API key" in answer["error"]["message"]


@pytest.mark.slow
@pytest.mark.anyio
async def test_on_the_sandbox_the_server_is_a_background_process_reached_directly(
    mcpctl_home: Path, tmp_path: Path
) -> None:
    from provision.ssh import sandbox

    remote = tmp_path / "box"
    (remote / "data").mkdir(parents=True)
    (remote / ".venv").symlink_to(REPO / ".venv")
    shutil.copy(SAMPLE, remote / "data" / SAMPLE.name)
    info = sandbox.up()
    profile = Profile(
        name="box",
        kind="sandbox",
        host=info.host,
        port=info.port,
        user=info.user,
        identity_file=info.client_key,
        remote_dir=str(remote),
        data=[SAMPLE],
        server_args=["--cache-dir", str(tmp_path / "cache")],
        http=HttpSettings(port=_free_port()),
    )
    save_profile(profile)
    pin_host_key(known_hosts_path("box"), info.host, info.port, info.host_key_line)
    try:
        with anyio.fail_after(BOUND * 2):
            profile, health = await enable_http(profile)
            assert health.ok and profile.http is not None and profile.http.service == "process"
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "provision.connect", "box"],
                env={**os.environ, "MCPCTL_HOME": str(mcpctl_home)},
            )
            async with Client(params, read_timeout_seconds=BOUND) as client:
                result = await client.call_tool("list_operations", {})
                assert not result.is_error
        log = (mcpctl_home / "state" / "logs" / "box.log").read_text()
        assert f"127.0.0.1:{profile.http.port}/mcp" in log and "tunnel" not in log  # no SSH forward
    finally:
        with anyio.fail_after(BOUND):
            async with connect(target_for(profile)) as remote_host:
                await http_install.stop_process(remote_host, HttpService.of(profile))
        sandbox.down()


def test_tunnel_and_status_refuse_what_they_cannot_do_in_one_sentence(served: Served) -> None:
    env = {"MCPCTL_HOME": str(served.home)}
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCPCTL_HOME", str(served.home))
        save_profile(served.profile.model_copy(update={"name": "nohttp", "http": None}))
    refused = runner.invoke(app, ["tunnel", "nohttp"], env=env)
    assert refused.exit_code == 2, refused.output
    assert "mcpctl provision nohttp --http" in " ".join(refused.stderr.split())
    status = runner.invoke(app, ["status", "nohttp"], env=env)  # neither EC2 nor HTTP: nothing to show
    assert status.exit_code == 2 and "applies only to EC2 profiles" in " ".join(status.stderr.split())
    with socket.socket() as taken:  # a local port someone else holds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(app, ["tunnel", NAME, "--local-port", str(port)], env=env)
    assert busy.exit_code != 0
    assert f"127.0.0.1:{port}" in busy.stderr and "--local-port" in busy.stderr
