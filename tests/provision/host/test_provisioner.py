"""provision and sync end to end: a real OpenSSH sshd and the real sandbox host, a real install, a real
MCP session through ``mcpctl connect``, with answers checked against pandas.

The full install (pip installs uv into a private venv, then ``uv sync --frozen --no-dev``) takes tens of
seconds, so it runs once per host: the module fixtures ``on_sshd`` and ``on_sandbox`` provision, and the
tests after them build on those installs (re-runs, MCP sessions, data changes, the CLI). Both share one
``MCPCTL_HOME`` for the module. Fault tests that must leave nothing behind get a fresh one
(``mcpctl_home``) and never get as far as installing.

What is installed is a frozen copy of this checkout, taken when the module starts (the same files
``mcpctl sync`` would send): a working tree edited while the suite runs would otherwise turn the
"re-run is a no-op" checks into updates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import asyncssh
import pandas as pd
import pytest
from mcp import Client, StdioServerParameters
from typer.testing import CliRunner

from provision.cli import app
from provision.errors import ConnectError, HostKeyError, ProfileError
from provision.host import provisioner
from provision.host.bootstrap import UV_VERSION
from provision.host.provisioner import ProvisionResult
from provision.layout import RemoteLayout
from provision.profiles import Profile, known_hosts_path, list_profiles, load_profile, save_profile
from provision.ssh import sandbox
from provision.ssh.hostkeys import pin_host_key
from provision.sync import project_sources
from provision.sync.scan import local_manifest

if TYPE_CHECKING:
    from tests.conftest import SshdServer

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample_sales_data.csv"
INSTALL_BOUND = 1200.0  # seconds: a first install on a cold cache downloads every wheel
BOUND = 120.0  # seconds: any other single step (a re-run, a session, a query), never an expectation
SSHD_PROFILE = "e2e-sshd"
SANDBOX_PROFILE = "e2e-sandbox"
OPERATION = "Dallas"


# ------------------------------------------------------------------------------------------ helpers


def fingerprint(key_line: str) -> str:
    return str(asyncssh.import_public_key(key_line).get_fingerprint("sha256"))


def expected_top(csv: Path, operation: str, n: int) -> list[tuple[str, str, float]]:
    """The top products by units, computed independently with pandas (ties by product id)."""
    df = pd.read_csv(csv)
    sub = df[df["OPERATION_NAME"] == operation]
    totals = sub.groupby(["PRODUCT_ID", "PRODUCT_NAME"], as_index=False)["UNITS_SOLD"].sum()
    totals = totals.sort_values(["UNITS_SOLD", "PRODUCT_ID"], ascending=[False, True]).head(n)
    return [
        (str(pid), str(name), float(units))
        for pid, name, units in zip(
            totals["PRODUCT_ID"], totals["PRODUCT_NAME"], totals["UNITS_SOLD"], strict=True
        )
    ]


def answered_top(structured: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [(p["product_id"], p["product_name"], float(p["units"])) for p in structured["products"]]


def proxy_client(name: str, home: Path) -> Client:
    """An MCP SDK client running ``python -m provision.connect NAME``: what ``mcpctl connect`` runs."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "provision.connect", name], env={"MCPCTL_HOME": str(home)}
    )
    return Client(params, mode="legacy", read_timeout_seconds=BOUND)


async def top_products(client: Client, n: int = 5) -> dict[str, Any]:
    result = await client.call_tool("top_n_products", {"operation": OPERATION, "n": n})
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def snapshot_project(destination: Path) -> Path:
    """Copy exactly the files ``mcpctl sync`` sends from this checkout (and its ignore file)."""
    code = project_sources(REPO, [], "/snapshot")[0]
    for rel, entry in local_manifest(code, hash_files=False).files.items():
        assert entry.local_path is not None
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(entry.local_path, target)
    if (REPO / ".mcpignore").is_file():
        shutil.copy2(REPO / ".mcpignore", destination / ".mcpignore")
    return destination


def _other_key_line() -> str:
    """A fresh ed25519 public key line that no test host has."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def _files_under(root: Path) -> dict[Path, bytes]:
    """Every file below ``root`` and its content."""
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Rerun = Callable[[Any], Awaitable[ProvisionResult]]


@dataclass
class Installed:
    """A host provisioned by a module fixture."""

    name: str
    result: ProvisionResult
    phases: list[tuple[str, str]]
    data: Path  # the local file the server's answers come from
    remote_data: str  # where it lands, relative to the remote directory
    rerun: Rerun  # provision it again: (on_phase) -> result
    first_phases: tuple[str, ...]  # the phases a run reports before "probe"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def remote_dir(self) -> Path:
        return Path(self.result.profile.remote_dir)


def flat(text: str) -> str:
    """Output with every run of whitespace made one space (rich wraps lines to the terminal width)."""
    return " ".join(text.split())


def recorder() -> tuple[list[tuple[str, str]], Any]:
    phases: list[tuple[str, str]] = []
    return phases, lambda phase, detail: phases.append((phase, detail))


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The frozen copy of the checkout that gets installed (see the module docstring)."""
    return snapshot_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, frozen: Path) -> Iterator[Path]:
    """The module's MCPCTL_HOME; provisioning installs the frozen copy of the checkout."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("mcpctl-home")
        patch.setenv("MCPCTL_HOME", str(path))
        patch.setattr(provisioner, "project_root", lambda: frozen)
        yield path


@pytest.fixture(scope="module")
def on_sshd(sshd: SshdServer, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Provision the real sshd's host (this machine) once, with a data file of its own."""
    data = tmp_path_factory.mktemp("sales") / "sales.csv"
    shutil.copyfile(SAMPLE, data)
    remote_dir = tmp_path_factory.mktemp("remote") / "app"
    phases, on_phase = recorder()

    async def provision() -> ProvisionResult:
        with anyio.fail_after(INSTALL_BOUND):
            return await provisioner.provision_host(
                SSHD_PROFILE,
                host_spec=f"{sshd.user}@{sshd.host}:{sshd.port}",
                host_key=sshd.host_key_line,
                identity_file=sshd.client_key,
                remote_dir=str(remote_dir),
                data=[data],
                on_phase=on_phase,
            )

    async def rerun(on_phase: Any) -> ProvisionResult:
        return await provisioner.provision_host(SSHD_PROFILE, on_phase=on_phase)

    result = anyio.run(provision)
    return Installed(SSHD_PROFILE, result, phases, data, "data/sales.csv", rerun, ())


@pytest.fixture(scope="module")
def on_sandbox(home: Path, frozen: Path) -> Iterator[Installed]:
    """Provision the sandbox host once (started for it, stopped when the module ends).

    Its profile has no data file: the server reads the sample shipped with the code.
    """
    phases, on_phase = recorder()

    async def provision() -> ProvisionResult:
        with anyio.fail_after(INSTALL_BOUND):
            return await provisioner.provision_sandbox(SANDBOX_PROFILE, on_phase=on_phase)

    async def rerun(on_phase: Any) -> ProvisionResult:
        return await provisioner.provision_sandbox(SANDBOX_PROFILE, on_phase=on_phase)

    try:
        result = anyio.run(provision)
        info = sandbox.status()
        assert info is not None
        sample = frozen / "data" / SAMPLE.name
        yield Installed(
            SANDBOX_PROFILE,
            result,
            phases,
            sample,
            f"data/{SAMPLE.name}",
            rerun,
            ("sandbox",),
            {"info": info},
        )
    finally:
        sandbox.down()


@pytest.fixture(params=["sshd", "sandbox"])
def installed(request: pytest.FixtureRequest) -> Installed:
    """Each provisioned host in turn."""
    host: Installed = request.getfixturevalue(f"on_{request.param}")
    return host


# ------------------------------------------------------------------------------- the first install


@pytest.mark.slow
def test_provision_host_saves_the_profile_pins_the_key_installs_and_checks(
    on_sshd: Installed, sshd: SshdServer
) -> None:
    result = on_sshd.result
    profile = load_profile(SSHD_PROFILE)
    assert profile == result.profile
    assert (profile.kind, profile.user, profile.host, profile.port) == (
        "host",
        sshd.user,
        sshd.host,
        sshd.port,
    )
    assert profile.identity_file == sshd.client_key
    assert profile.data == [on_sshd.data]
    # Pinned: exactly the fixture's key, under [host]:port, in the profile's own known_hosts.
    assert result.pinned == fingerprint(sshd.host_key_line)
    pinned = known_hosts_path(SSHD_PROFILE).read_text()
    assert pinned == f"[{sshd.host}]:{sshd.port} {sshd.host_key_line}\n"
    # Every phase ran and said so; the self-check ran the real server on the profile's data.
    phases = ["host key", "probe", "sync", "environment", "check", "warm server"]
    assert [phase for phase, _ in on_sshd.phases] == phases
    assert dict(on_sshd.phases)["warm server"].startswith("none ran")  # a fresh host runs none yet
    assert "sales.csv" in result.report.check_output


@pytest.mark.slow
def test_provision_sandbox_saves_the_profile_pinned_from_the_sandbox_files(on_sandbox: Installed) -> None:
    info = on_sandbox.extra["info"]
    profile = load_profile(SANDBOX_PROFILE)
    assert profile == on_sandbox.result.profile
    assert (profile.kind, profile.host, profile.port, profile.user) == (
        "sandbox",
        info.host,
        info.port,
        info.user,
    )
    assert profile.identity_file == info.client_key
    assert profile.data == []
    assert Path(profile.remote_dir) == sandbox.sandbox_dir() / "hosts" / SANDBOX_PROFILE
    assert on_sandbox.result.pinned is None  # nobody had to vouch for it: read from the sandbox's files
    pinned = known_hosts_path(SANDBOX_PROFILE).read_text()
    assert pinned == f"[{info.host}]:{info.port} {info.host_key_line}\n"
    assert [p for p, _ in on_sandbox.phases] == [
        "sandbox",
        "probe",
        "sync",
        "environment",
        "check",
        "warm server",
    ]
    assert SAMPLE.name in on_sandbox.result.report.check_output


@pytest.mark.slow
def test_the_host_has_the_environment_the_code_and_the_data(installed: Installed) -> None:
    layout = RemoteLayout.of(installed.result.profile.remote_dir)
    assert os.access(layout.python, os.X_OK)
    assert os.access(layout.uv, os.X_OK)
    stamp = json.loads(Path(layout.stamp).read_text())
    assert stamp["uv"] == UV_VERSION and stamp["fingerprint"]
    assert (installed.remote_dir / "mcp_sales" / "server.py").is_file()
    assert (installed.remote_dir / "uv.lock").read_bytes() == (REPO / "uv.lock").read_bytes()
    assert (installed.remote_dir / installed.remote_data).read_bytes() == installed.data.read_bytes()
    report = installed.result.report
    assert not report.up_to_date
    assert dict(installed.phases)["environment"].startswith(f"uv {UV_VERSION} installed")
    assert report.facts is not None and report.facts.os == "Linux"
    check = report.check_output
    for name in ("python", "imports", "data", "query"):
        assert any(line.startswith("ok") and f" {name} " in line for line in check.splitlines()), check
    assert "FAIL" not in check


# ---------------------------------------------------------------------------- sessions and re-runs


@pytest.mark.slow
@pytest.mark.anyio
async def test_an_mcp_session_through_the_proxy_answers_like_pandas(installed: Installed, home: Path) -> None:
    with anyio.fail_after(BOUND):
        async with proxy_client(installed.name, home) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "top_n_products" in tools
            top = await top_products(client)
    # Computed from the committed sample: the host's copy answers exactly like it.
    assert answered_top(top) == expected_top(SAMPLE, OPERATION, 5)
    assert top["operation"] == OPERATION


@pytest.mark.slow
@pytest.mark.anyio
async def test_re_running_provision_changes_nothing_and_says_so(installed: Installed) -> None:
    pins_before = known_hosts_path(installed.name).read_bytes()
    phases, on_phase = recorder()
    with anyio.fail_after(BOUND):
        again = await installed.rerun(on_phase)
    assert again.report.up_to_date
    assert again.pinned is None  # the existing pin was used, not replaced
    assert dict(phases)["environment"].startswith("up to date")
    assert dict(phases)["sync"].startswith("up to date")
    assert [p for p, _ in phases] == [*installed.first_phases, "probe", "sync", "environment"]  # no check
    assert again.profile == installed.result.profile
    assert known_hosts_path(installed.name).read_bytes() == pins_before


@pytest.mark.slow
@pytest.mark.anyio
async def test_giving_the_pinned_key_again_verifies_it_and_keeps_the_pin(
    on_sshd: Installed, sshd: SshdServer
) -> None:
    pins_before = known_hosts_path(SSHD_PROFILE).read_text()
    with anyio.fail_after(BOUND):
        same = await provisioner.provision_host(SSHD_PROFILE, host_key=fingerprint(sshd.host_key_line))
    assert same.pinned == fingerprint(sshd.host_key_line)
    assert same.report.up_to_date
    assert known_hosts_path(SSHD_PROFILE).read_text() == pins_before


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_changed_data_file_is_sent_alone_and_the_running_server_answers_from_it(
    installed: Installed, home: Path
) -> None:
    original = installed.data.read_bytes()
    try:
        with anyio.fail_after(BOUND * 2):
            async with proxy_client(installed.name, home) as client:
                before = await top_products(client, n=3)
                # The least sold product of the operation sells a thousand times more: it must lead.
                df = pd.read_csv(installed.data)
                last_id = expected_top(installed.data, OPERATION, 1000)[-1][0]
                rows = (df["OPERATION_NAME"] == OPERATION) & (df["PRODUCT_ID"] == last_id)
                df.loc[rows, "UNITS_SOLD"] = df.loc[rows, "UNITS_SOLD"] * 1000
                df.to_csv(installed.data, index=False)

                report = await provisioner.sync_profile(installed.name)
                after = await top_products(client, n=3)  # same session, same server process
        assert report.files_sent == 1
        assert [u.path for p in report.plans for u in p.uploads] == [installed.remote_data]
        assert (installed.remote_dir / installed.remote_data).read_bytes() == installed.data.read_bytes()
        assert after["data_version"] != before["data_version"]
        assert answered_top(before) == expected_top(SAMPLE, OPERATION, 3)
        assert answered_top(after) == expected_top(installed.data, OPERATION, 3)
        assert answered_top(after)[0][0] == last_id
    finally:
        installed.data.write_bytes(original)
        with anyio.fail_after(BOUND):
            await provisioner.sync_profile(installed.name)


@pytest.mark.slow
def test_the_cli_on_the_provisioned_host_reports_up_to_date(on_sshd: Installed, home: Path) -> None:
    runner = CliRunner()
    rerun = runner.invoke(app, ["provision", SSHD_PROFILE, "--json"])
    assert rerun.exit_code == 0, rerun.output
    data = json.loads(rerun.stdout)
    assert data["up_to_date"] is True
    assert data["profile"]["name"] == SSHD_PROFILE
    assert [p["phase"] for p in data["phases"]] == ["probe", "sync", "environment"]

    human = runner.invoke(app, ["provision", SSHD_PROFILE])
    assert human.exit_code == 0, human.output
    assert human.stdout == ""  # human output is on stderr
    assert f"{SSHD_PROFILE} up to date" in flat(human.stderr)
    assert "environment up to date" in flat(human.stderr)
    assert f"mcpctl config claude {SSHD_PROFILE}" in flat(human.stderr)

    synced = runner.invoke(app, ["sync", SSHD_PROFILE])
    assert synced.exit_code == 0, synced.output
    assert flat(synced.stderr).startswith("up to date (")


@pytest.mark.slow
@pytest.mark.anyio
async def test_sandbox_down_stops_the_host_the_profile_points_at(on_sandbox: Installed) -> None:
    status = CliRunner().invoke(app, ["sandbox", "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["port"] == on_sandbox.result.profile.port
    assert sandbox.down() is True
    assert sandbox.status() is None
    # The profile stays; it just has no host to reach until the sandbox is up again.
    with anyio.fail_after(BOUND), pytest.raises(ConnectError, match="connection refused"):
        await provisioner.sync_profile(SANDBOX_PROFILE, dry_run=True)
    assert load_profile(SANDBOX_PROFILE) == on_sandbox.result.profile


# ------------------------------------------------------------------------------------------- faults


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["key line", "fingerprint"])
async def test_a_wrong_host_key_saves_nothing_and_pins_nothing(
    sshd: SshdServer, mcpctl_home: Path, tmp_path: Path, form: str
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    other_line = " ".join(other.export_public_key("openssh").decode().split()[:2])
    given = other_line if form == "key line" else fingerprint(other_line)
    with anyio.fail_after(BOUND), pytest.raises(HostKeyError) as caught:
        await provisioner.provision_host(
            "wrong-key",
            host_spec=f"{sshd.user}@{sshd.host}:{sshd.port}",
            host_key=given,
            identity_file=sshd.client_key,
            remote_dir=str(tmp_path / "app"),
        )
    message = str(caught.value)
    assert fingerprint(other_line) in message  # what was expected
    assert fingerprint(sshd.host_key_line) in message  # what the host presents
    assert caught.value.exit_code == 4
    assert list_profiles() == []
    assert not known_hosts_path("wrong-key").exists()
    assert not (tmp_path / "app").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [False, None], ids=["declined", "nobody-to-ask"])
async def test_an_unconfirmed_host_key_is_refused_with_its_fingerprint(
    sshd: SshdServer, mcpctl_home: Path, tmp_path: Path, answer: bool | None
) -> None:
    asked: list[tuple[str, int, str]] = []

    def confirm(host: str, port: int, shown: str) -> bool:
        asked.append((host, port, shown))
        return False

    with anyio.fail_after(BOUND), pytest.raises(HostKeyError) as caught:
        await provisioner.provision_host(
            "unconfirmed",
            host_spec=f"{sshd.user}@{sshd.host}:{sshd.port}",
            identity_file=sshd.client_key,
            remote_dir=str(tmp_path / "app"),
            confirm=confirm if answer is False else None,
        )
    expected = fingerprint(sshd.host_key_line)
    assert expected in str(caught.value)
    assert f"--host-key {expected}" in str(caught.value)  # how to vouch for it instead
    assert asked == ([(sshd.host, sshd.port, expected)] if answer is False else [])
    assert list_profiles() == []
    assert not known_hosts_path("unconfirmed").exists()


@pytest.mark.anyio
async def test_a_confirmed_host_key_is_pinned(sshd: SshdServer, mcpctl_home: Path) -> None:
    profile = Profile(name="confirmed", host=sshd.host, port=sshd.port, user=sshd.user)
    shown: list[str] = []

    def confirm(host: str, port: int, key: str) -> bool:
        shown.append(key)
        return True

    with anyio.fail_after(BOUND):
        pinned = await provisioner.pin_for_host(profile, host_key=None, confirm=confirm, refresh=False)
        again = await provisioner.pin_for_host(profile, host_key=None, confirm=confirm, refresh=False)
    assert pinned == fingerprint(sshd.host_key_line) and shown == [pinned]
    assert known_hosts_path("confirmed").read_text() == f"[{sshd.host}]:{sshd.port} {sshd.host_key_line}\n"
    assert again is None and shown == [pinned]  # pinned already: nobody is asked twice


@pytest.mark.anyio
async def test_a_host_that_moved_must_be_pinned_again_and_the_old_profile_stays(
    sshd: SshdServer, mcpctl_home: Path
) -> None:
    old = Profile(
        name="moved", host=sshd.host, port=closed_port(), user=sshd.user, identity_file=sshd.client_key
    )
    save_profile(old)
    pin_host_key(known_hosts_path("moved"), old.host or "", old.port, sshd.host_key_line)
    pins = known_hosts_path("moved").read_text()
    shown = re.escape(fingerprint(sshd.host_key_line))
    with anyio.fail_after(BOUND), pytest.raises(HostKeyError, match=shown):
        await provisioner.provision_host("moved", host_spec=f"{sshd.user}@{sshd.host}:{sshd.port}")
    assert load_profile("moved") == old
    assert known_hosts_path("moved").read_text() == pins


@pytest.mark.anyio
@pytest.mark.parametrize("with_key", [True, False], ids=["host-key-given", "no-host-key"])
async def test_an_unreachable_port_is_a_connect_error_and_saves_nothing(
    sshd: SshdServer, mcpctl_home: Path, with_key: bool
) -> None:
    port = closed_port()
    with anyio.fail_after(BOUND), pytest.raises(ConnectError) as caught:
        await provisioner.provision_host(
            "unreachable",
            host_spec=f"{sshd.user}@127.0.0.1:{port}",
            host_key=sshd.host_key_line if with_key else None,
            confirm=lambda *_: True,
        )
    # Refused, not waited out: the message says so and where.
    assert f"127.0.0.1:{port}: connection refused" in str(caught.value)
    assert caught.value.exit_code == 3
    assert list_profiles() == []
    assert not known_hosts_path("unreachable").exists()


@pytest.mark.anyio
async def test_a_new_profile_needs_a_host(mcpctl_home: Path) -> None:
    with pytest.raises(ProfileError, match=r"does not exist yet; pass --host user@host\[:port\]"):
        await provisioner.provision_host("nowhere")
    assert list_profiles() == []


@pytest.mark.anyio
async def test_invalid_settings_name_the_field_and_save_nothing(sshd: SshdServer, mcpctl_home: Path) -> None:
    with pytest.raises(ProfileError, match="field 'remote_dir': must be an absolute POSIX path") as caught:
        await provisioner.provision_host(
            "relative",
            host_spec=f"{sshd.user}@{sshd.host}:{sshd.port}",
            host_key=sshd.host_key_line,
            remote_dir="relative/dir",
        )
    assert "fix the option" in str(caught.value)
    assert list_profiles() == []
    assert not known_hosts_path("relative").exists()


def test_merged_profile_keeps_what_was_not_given_and_merges_columns(tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("x\n")
    existing = Profile(
        name="keep", host="h.example", port=2222, user="ann", remote_dir="/srv/keep", columns={"units": "QTY"}
    )
    merged = provisioner.merged_profile(
        existing, {"name": "keep", "user": None, "remote_dir": None}, {"operation": "CITY"}, [data]
    )
    assert (merged.host, merged.port, merged.user, merged.remote_dir) == (
        "h.example",
        2222,
        "ann",
        "/srv/keep",
    )
    assert merged.columns == {"units": "QTY", "operation": "CITY"}
    assert merged.data == [data]


@pytest.mark.anyio
async def test_a_sandbox_name_taken_by_a_host_profile_is_refused_before_the_sandbox_starts(
    mcpctl_home: Path,
) -> None:
    save_profile(Profile(name="taken", host="203.0.113.7", port=2222, user="ann"))
    saved = _files_under(mcpctl_home)
    try:
        with anyio.fail_after(BOUND), pytest.raises(ProfileError) as caught:
            await provisioner.provision_sandbox("taken")
        message = str(caught.value)
        assert "profile 'taken' is a host profile for ann@203.0.113.7:2222, not a sandbox one" in message
        assert "choose another name, or free this one first with `mcpctl profile remove taken`" in message
        assert sandbox.status() is None  # refused before the sandbox was started for nothing
        assert _files_under(mcpctl_home) == saved  # the profile, and nothing else was written
    finally:
        sandbox.down()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "free"),
    [("sandbox", "`mcpctl profile remove taken`"), ("ec2", "`mcpctl destroy taken` (it also terminates")],
)
async def test_a_host_given_for_a_sandbox_or_ec2_profile_is_refused_and_changes_nothing(
    mcpctl_home: Path, kind: str, free: str
) -> None:
    alias = "i-0123456789abcdef0" if kind == "ec2" else None
    save_profile(
        Profile(name="taken", kind=kind, host="127.0.0.1", port=2222, user="ann", host_key_alias=alias)
    )
    pin_host_key(known_hosts_path("taken"), "127.0.0.1", 2222, _other_key_line(), alias=alias)
    files = _files_under(mcpctl_home)

    with anyio.fail_after(BOUND), pytest.raises(ProfileError) as caught:
        await provisioner.provision_host(
            "taken", host_spec=f"ann@127.0.0.1:{closed_port()}", confirm=lambda *_: True
        )

    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert f"profile 'taken' is a {kind} profile for ann@127.0.0.1:2222, not a host one" in message
    assert f"free this one first with {free}" in message
    assert _files_under(mcpctl_home) == files
