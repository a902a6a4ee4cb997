"""``provision --ec2`` end to end: moto stands in for AWS, the real sshd fixture for the instance.

The instance moto "launches" is reached through the runtime's endpoint resolver, which maps each
public IP moto hands out to a local name of the sshd fixture (127.0.0.1, then localhost, ...), and
the host key "we generated" is the fixture's host key (the runtime's host key factory). So the
profile, the pin under the instance-id alias, the cloud-init wait and the bootstrap all run for real.

The bootstrap installs the locked environment once for the whole module (about half a minute, from
the local uv cache); later provisions reuse that remote directory and find it up to date. It installs
from a copy of the project taken when the module starts, so "up to date" cannot depend on edits made
to the checkout while the tests run.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from provision import ec2
from provision.cli import app
from provision.ec2 import provisioning as ec2_provision
from provision.ec2.cloudinit import HostKey
from provision.ec2.lifecycle import (
    destroy_profile,
    ensure_running,
    start_profile,
    status_profile,
    stop_profile,
)
from provision.ec2.model import Ec2Instance, Ec2Launch, Pacing, SshEndpoint
from provision.ec2.provisioning import Ec2Runtime, provision_ec2, resolve_spec
from provision.errors import CloudError, HostKeyError, ProfileError, RemoteError
from provision.host import provisioner
from provision.host.provisioner import ProvisionResult
from provision.profiles import (
    Ec2Settings,
    Profile,
    keys_dir,
    known_hosts_path,
    load_profile,
    new_profile,
    profiles_dir,
    save_profile,
)
from provision.ssh.hostkeys import parse_host_key, pin_host_key
from provision.ssh.profile_target import target_for
from provision.ssh.remote import connect
from provision.ssh.target import RunResult

if TYPE_CHECKING:
    from tests.conftest import SshdServer
    from tests.provision.conftest import MotoAccount

REGION = "us-east-1"
MY_CIDR = "203.0.113.7/32"


# --------------------------------------------------------------------------------------------------
# the stand-in instance


class Loopback:
    """Endpoint resolver: each new public IP of a running instance gets the next local name of sshd."""

    NAMES = ("127.0.0.1", "localhost")

    def __init__(self, sshd: SshdServer) -> None:
        self.sshd = sshd
        self.names: dict[str, str] = {}

    def __call__(self, instance: Ec2Instance) -> SshEndpoint:
        assert instance.state == "running" and instance.public_ip, instance
        if instance.public_ip not in self.names:
            self.names[instance.public_ip] = self.NAMES[len(self.names) % len(self.NAMES)]
        return SshEndpoint(self.names[instance.public_ip], self.sshd.port, self.sshd.user)


def fixture_host_key(sshd: SshdServer) -> HostKey:
    """The sshd fixture's host key, as if we had generated it for the instance's user-data."""
    return HostKey((sshd.workdir / "host_ed25519").read_text(), sshd.host_key_line)


def give_client_key(sshd: SshdServer, name: str) -> Path:
    """Put the fixture's authorised client key where provisioning looks for the profile's key."""
    path = keys_dir() / f"mcpctl-{name}"
    shutil.copy(sshd.client_key, path)
    path.chmod(0o600)
    return path


def live(clients: ec2.Ec2Clients, profile: str) -> list[Any]:
    reply = clients.ec2.describe_instances(
        Filters=[
            {"Name": "tag:mcpctl:profile", "Values": [profile]},
            {"Name": "instance-state-name", "Values": list(ec2.LIVE_STATES)},
        ]
    )
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@dataclass
class Provisioned:
    result: ProvisionResult
    runtime: Ec2Runtime
    clients: ec2.Ec2Clients
    remote_dir: Path
    phases: list[tuple[str, str]]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One MCPCTL_HOME for the module's provisioned profiles."""
    path = tmp_path_factory.mktemp("ec2-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCPCTL_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install from a snapshot of the project: what a host receives must not change mid-module."""
    root = provisioner.project_root()
    copy = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "uv.lock", "README.md", ".mcpignore"):
        if (root / name).exists():
            shutil.copy2(root / name, copy / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("mcp_sales", "provision"):
        shutil.copytree(root / name, copy / name, ignore=skip)
    (copy / "data").mkdir()
    for item in (root / "data").iterdir():
        if item.is_file():  # data/big/ holds benchmark sets that sync never sends
            shutil.copy2(item, copy / "data" / item.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(provisioner, "project_root", lambda: copy)
        yield copy


@pytest.fixture(scope="module")
def seeded(moto_account: MotoAccount) -> ec2.Ec2Clients:
    """The module's moto account, emptied and seeded once (tests use distinct profile names)."""
    return moto_account.fresh()


@pytest.fixture(scope="module")
def provisioned(
    seeded: ec2.Ec2Clients,
    sshd: SshdServer,
    home: Path,
    project_copy: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Provisioned:
    """Profile 'shop' provisioned once: launched in moto, pinned, bootstrapped on the sshd fixture."""
    clients = seeded
    runtime = Ec2Runtime(
        clients=lambda _region: clients,
        pacing=Pacing(poll_s=0, timeout_s=60),
        endpoint=Loopback(sshd),
        host_key_factory=lambda _comment: fixture_host_key(sshd),
    )
    give_client_key(sshd, "shop")
    remote_dir = tmp_path_factory.mktemp("remote") / "shop"
    phases: list[tuple[str, str]] = []
    result = asyncio.run(
        provision_ec2(
            "shop",
            region=REGION,
            ssh_cidr=MY_CIDR,
            autostop_minutes=45,
            remote_dir=str(remote_dir),
            on_phase=lambda p, d: phases.append((p, d)),
            runtime=runtime,
        )
    )
    return Provisioned(result, runtime, clients, remote_dir, phases)


# --------------------------------------------------------------------------------------------------
# provision end to end


def test_provision_saves_the_profile_pins_our_key_and_bootstraps(
    provisioned: Provisioned, sshd: SshdServer
) -> None:
    result, clients = provisioned.result, provisioned.clients
    (inst,) = live(clients, "shop")
    iid = inst["InstanceId"]
    profile = load_profile("shop")
    assert profile == result.profile
    assert (profile.kind, profile.host, profile.port, profile.user) == (
        "ec2",
        "127.0.0.1",
        sshd.port,
        sshd.user,
    )
    assert profile.identity_file == keys_dir() / "mcpctl-shop"
    assert profile.host_key_alias == f"mcpctl-shop-{iid}"
    assert profile.remote_dir == str(provisioned.remote_dir)
    sg = inst["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
    assert profile.ec2 == Ec2Settings(
        region=REGION,
        instance_type="t3.small",
        instance_id=iid,
        security_group_id=sg,
        key_name="mcpctl-shop",
        ssh_cidr=MY_CIDR,
        volume_gb=16,
        autostop_minutes=45,
    )

    # pinned before the first connection: exactly our key, under the alias, nothing under the address
    assert known_hosts_path("shop").read_text().splitlines() == [
        f"{profile.host_key_alias} {sshd.host_key_line}"
    ]
    assert result.pinned == parse_host_key(sshd.host_key_line).fingerprint

    # the profile's autostop setting is what the instance's user-data renders
    raw = clients.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    user_data = base64.b64decode(raw).decode()
    assert "power off after 45 min" in user_data and sshd.host_key_line in user_data

    # cloud-init waited for (absent on the stand-in host), then the bootstrap ran
    phases = [p for p, _ in provisioned.phases]
    assert phases.index("cloud-init") < phases.index("probe") < phases.index("environment")
    assert ("cloud-init", "not installed (nothing to wait for)") in provisioned.phases
    assert result.report.changed and "check" in phases
    assert (provisioned.remote_dir / ".venv" / "bin" / "python").exists()


def test_rerun_is_idempotent(provisioned: Provisioned) -> None:
    before = load_profile("shop")
    (inst,) = live(provisioned.clients, "shop")
    again = asyncio.run(provision_ec2("shop", ssh_cidr=MY_CIDR, runtime=provisioned.runtime))
    assert [i["InstanceId"] for i in live(provisioned.clients, "shop")] == [inst["InstanceId"]]
    assert again.pinned is None  # the pin was already right
    assert again.report.up_to_date, again.report.phases
    assert load_profile("shop") == again.profile == before


def test_stop_then_start_moves_the_host_and_the_pin_still_holds(
    provisioned: Provisioned, seeded: ec2.Ec2Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = provisioned.runtime
    before = load_profile("shop")

    # `mcpctl stop` through the CLI (no SSH involved), `mcpctl status --json` sees it
    monkeypatch.setattr(ec2_provision, "make_clients", lambda _region: seeded)
    stopped = CliRunner().invoke(app, ["stop", "shop"])
    assert stopped.exit_code == 0, stopped.output
    assert "shop stopped" in flat(stopped.output) and "mcpctl start shop" in flat(stopped.output)
    shown = CliRunner().invoke(app, ["status", "shop", "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert (status["state"], status["public_ip"], status["uptime_s"]) == ("stopped", None, None)
    assert status["hourly_usd"] == pytest.approx(0.0208) and status["autostop_minutes"] == 45

    # what `mcpctl connect` does first: start it, wait for SSH, save the new address
    after = ensure_running(load_profile("shop"), runtime=rt)
    assert after.host != before.host and after.host_key_alias == before.host_key_alias
    assert load_profile("shop") == after
    assert status_profile("shop", runtime=rt).state == "running"

    async def logs_in(profile: Profile) -> int:
        async with connect(target_for(profile)) as remote:
            return (await remote.run(["true"])).exit_status

    assert asyncio.run(logs_in(after)) == 0  # verified by the alias pin at the new address

    # `mcpctl start` after another stop: the address moves again
    assert stop_profile("shop", runtime=rt).state == "stopped"
    started = start_profile("shop", runtime=rt)
    assert started.state == "running" and started.host != after.host
    assert load_profile("shop").host == started.host
    # running at the recorded address: nothing to do, nothing saved
    current = load_profile("shop")
    assert ensure_running(current, runtime=rt) is current


def test_destroy_removes_everything_in_aws_and_locally(provisioned: Provisioned, sshd: SshdServer) -> None:
    rt, clients = provisioned.runtime, provisioned.clients
    give_client_key(sshd, "gone")
    # The same remote directory: its environment is current, so this provision is quick.
    made = asyncio.run(
        provision_ec2("gone", ssh_cidr=MY_CIDR, remote_dir=str(provisioned.remote_dir), runtime=rt)
    )
    assert made.report.up_to_date
    iid = made.profile.ec2.instance_id if made.profile.ec2 else None
    local = [keys_dir() / "mcpctl-gone", known_hosts_path("gone"), profiles_dir() / "gone.toml"]
    assert all(path.exists() for path in local)

    teardown = destroy_profile("gone", runtime=rt)

    assert teardown.aws.instances == (iid,) and teardown.aws.key_pairs == ("mcpctl-gone",)
    tag: Any = [{"Name": "tag:mcpctl:profile", "Values": ["gone"]}]
    assert live(clients, "gone") == []
    assert clients.ec2.describe_security_groups(Filters=tag)["SecurityGroups"] == []
    assert clients.ec2.describe_key_pairs(Filters=tag)["KeyPairs"] == []
    assert [v for v in clients.ec2.describe_volumes(Filters=tag)["Volumes"] if v["State"] != "deleting"] == []
    assert not any(path.exists() for path in local)
    assert set(teardown.local) == set(local)
    # the other profile is untouched
    assert len(live(clients, "shop")) == 1 and load_profile("shop").kind == "ec2"
    assert (keys_dir() / "mcpctl-shop").exists()
    with pytest.raises(ProfileError, match="no profile named 'gone'"):
        destroy_profile("gone", runtime=rt)


def test_a_host_presenting_another_key_is_refused(
    provisioned: Provisioned, sshd: SshdServer, seeded: ec2.Ec2Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real default: a freshly generated host key. The stand-in host presents its own key instead,
    # exactly what a man in the middle would do: the first connection must fail, not trust it.
    rt = dataclasses.replace(provisioned.runtime, host_key_factory=None)
    give_client_key(sshd, "rogue")
    with pytest.raises(HostKeyError, match="CHANGED"):
        asyncio.run(provision_ec2("rogue", ssh_cidr=MY_CIDR, runtime=rt))
    profile = load_profile("rogue")  # saved before any SSH, so destroy can clean up
    pinned = known_hosts_path("rogue").read_text()
    assert profile.host_key_alias in pinned and sshd.host_key_line.split()[1] not in pinned

    # `mcpctl destroy --yes --json` cleans it up
    monkeypatch.setattr(ec2_provision, "make_clients", lambda _region: seeded)
    result = CliRunner().invoke(app, ["destroy", "rogue", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    removed = json.loads(result.stdout)
    assert removed["instances"] == [profile.ec2.instance_id if profile.ec2 else None]
    assert removed["key_pairs"] == ["mcpctl-rogue"] and len(removed["local_files"]) == 3
    assert live(provisioned.clients, "rogue") == [] and not (profiles_dir() / "rogue.toml").exists()


# --------------------------------------------------------------------------------------------------
# pieces


def test_resolve_spec_options_then_profile_then_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    fresh = resolve_spec("web", None)
    assert (fresh.region, fresh.instance_type, fresh.volume_gb, fresh.autostop_minutes) == (
        "eu-west-1",
        "t3.small",
        16,
        60,
    )
    saved = new_profile(
        name="web",
        kind="ec2",
        user="ubuntu",
        ec2={
            "region": "us-east-2",
            "instance_type": "t4g.small",
            "instance_id": "i-1",
            "autostop_minutes": 0,
        },
    )
    kept = resolve_spec("web", saved, volume_gb=30, ssh_cidr="198.51.100.4")
    assert (kept.region, kept.instance_type, kept.volume_gb, kept.autostop_minutes) == (
        "us-east-2",
        "t4g.small",
        30,
        0,
    )
    assert kept.ssh_cidr == "198.51.100.4"
    assert resolve_spec("web", saved, instance_type="t3.medium", autostop_minutes=15).autostop_minutes == 15
    with pytest.raises(ProfileError, match="has its instance i-1 in us-east-2"):
        resolve_spec("web", saved, region="eu-west-1")


def test_resolve_spec_without_any_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "config").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    with pytest.raises(CloudError, match="no AWS region") as err:
        resolve_spec("web", None)
    assert err.value.exit_code == 7 and "--region" in str(err.value)
    # a misspelt AWS_PROFILE is one clear line too, not a traceback
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(CloudError, match="no-such-profile"):
        resolve_spec("web", None)
    with pytest.raises(CloudError, match="no-such-profile"):
        Ec2Runtime().clients_for(REGION)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(0, "done"), (2, "done with warnings"), (127, "not installed")],
)
def test_cloud_init_outcome(status: int, expected: str) -> None:
    assert ec2_provision.cloud_init_outcome(RunResult((), status, "", "")).startswith(expected)


def test_cloud_init_failure_is_a_remote_error() -> None:
    with pytest.raises(RemoteError, match=r"exit status 1: status: error") as err:
        ec2_provision.cloud_init_outcome(RunResult((), 1, "\nstatus: error\n", ""))
    assert "cloud-init-output.log" in str(err.value)


@pytest.mark.anyio
async def test_wait_cloud_init_reports_a_failed_first_boot(
    sshd: SshdServer, mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = new_profile(
        name="boot",
        kind="ec2",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity_file=sshd.client_key,
        host_key_alias="mcpctl-boot-i-1",
    )
    pin_host_key(known_hosts_path("boot"), sshd.host, sshd.port, sshd.host_key_line, alias="mcpctl-boot-i-1")
    monkeypatch.setattr(ec2_provision, "CLOUD_INIT_WAIT", ("/bin/sh", "-c", "echo 'status: error'; exit 1"))
    with pytest.raises(RemoteError, match="cloud-init failed on the host"):
        await ec2_provision.wait_cloud_init(profile, pacing=Pacing(poll_s=0, timeout_s=5))
    monkeypatch.setattr(ec2_provision, "CLOUD_INIT_WAIT", ("/bin/sh", "-c", "echo 'status: done'"))
    assert await ec2_provision.wait_cloud_init(profile) == "done"


def test_unrecoverable_host_key_without_a_pin_is_refused(mcpctl_home: Path) -> None:
    inst = Ec2Instance(
        "i-9", "running", "t3.small", "amd64", "198.51.100.9", None, None, None, None, None, (), None
    )
    launched = Ec2Launch(
        inst,
        (),
        ec2.ClientKey("mcpctl-k", Path("/nonexistent"), "ssh-ed25519 AAAA"),
        "sg-1",
        MY_CIDR,
        None,
        "mcpctl-k-i-9",
        SshEndpoint("198.51.100.9"),
    )
    profile = new_profile(
        name="k", kind="ec2", host="198.51.100.9", user="ubuntu", host_key_alias="mcpctl-k-i-9"
    )
    with pytest.raises(HostKeyError, match="neither in its user-data nor pinned"):
        ec2_provision.pin_launch_key(profile, launched)
    assert not known_hosts_path("k").exists()


def test_ensure_running_leaves_other_kinds_alone() -> None:
    def no_aws(_region: str) -> ec2.Ec2Clients:
        raise AssertionError("a host profile must not reach AWS")

    profile = new_profile(name="lab", host="198.51.100.2", user="ann")
    assert ensure_running(profile, runtime=Ec2Runtime(clients=no_aws)) is profile


# --------------------------------------------------------------------------------------------------
# command line


def test_cli_dry_run_prints_the_plan_and_creates_nothing(
    seeded: ec2.Ec2Clients, mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ec2_provision, "make_clients", lambda _region: seeded)
    argv = ["provision", "plan1", "--ec2", "--region", REGION, "--ssh-cidr", MY_CIDR, "--dry-run"]
    shown = CliRunner().invoke(app, [*argv, "--instance-type", "t4g.small"])
    assert shown.exit_code == 0, shown.output
    out = flat(shown.output)
    assert (
        "create instance t4g.small (arm64)" in out and "authorize ssh-rule tcp/22 from 203.0.113.7/32" in out
    )
    assert "~0.0168 USD/hour" in out and "autostop: after 60 idle minutes" in out

    as_json = CliRunner().invoke(app, [*argv, "--json", "--autostop-minutes", "0"])
    assert as_json.exit_code == 0, as_json.output
    plan = json.loads(as_json.stdout)
    assert plan["dry_run"] and plan["autostop_minutes"] == 0 and plan["hourly_usd"] == pytest.approx(0.0208)
    assert [s["action"] for s in plan["steps"]] == ["create", "create", "authorize", "create"]

    assert live(seeded, "plan1") == []
    assert (
        seeded.ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["mcpctl-plan1"]}])["KeyPairs"]
        == []
    )
    assert not (profiles_dir() / "plan1.toml").exists() and not (keys_dir() / "mcpctl-plan1").exists()


def test_cli_without_aws_credentials_exits_7(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probe: no network
    result = CliRunner().invoke(
        app, ["provision", "nocreds", "--ec2", "--region", REGION, "--ssh-cidr", MY_CIDR]
    )
    assert result.exit_code == 7, result.output
    assert "no AWS credentials found" in flat(result.output) and "aws sso login" in flat(result.output)
    assert not (profiles_dir() / "nocreds.toml").exists()


@pytest.mark.parametrize(
    ("command", "advice"),
    [
        (["destroy", "lab", "--yes"], "mcpctl profile remove lab"),
        (["stop", "lab"], "its own tools"),
        (["start", "lab"], "its own tools"),
        (["status", "lab"], "mcpctl profile show lab"),
    ],
)
def test_cli_ec2_commands_refuse_other_profiles(mcpctl_home: Path, command: list[str], advice: str) -> None:
    save_profile(new_profile(name="lab", host="198.51.100.2", user="ann"))
    result = CliRunner().invoke(app, command)
    assert result.exit_code == ProfileError.exit_code, result.output
    out = flat(result.output)
    assert f"`mcpctl {command[0]}` applies only to EC2 profiles" in out and advice in out
    assert (profiles_dir() / "lab.toml").exists()


def test_cli_destroy_asks_first(mcpctl_home: Path) -> None:
    save_profile(
        new_profile(name="e1", kind="ec2", user="ubuntu", ec2={"region": REGION, "instance_id": "i-77"})
    )
    result = CliRunner().invoke(app, ["destroy", "e1"], input="n\n")
    assert result.exit_code == 1, result.output
    out = flat(result.output)
    assert "terminate i-77 in us-east-1" in out and "nothing destroyed" in out
    assert (profiles_dir() / "e1.toml").exists()


def test_cli_ec2_options_need_ec2_and_host_options_do_not_apply(mcpctl_home: Path) -> None:
    result = CliRunner().invoke(app, ["provision", "x", "--host", "ann@198.51.100.2", "--region", REGION])
    assert result.exit_code == 1, result.output
    assert "--region does not apply to --host: only --ec2 launches an instance" in flat(result.output)
    result = CliRunner().invoke(app, ["provision", "x", "--ec2", "--host-key", "SHA256:x", "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "--host-key does not apply to --ec2" in flat(result.output)
