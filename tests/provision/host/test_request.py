"""request.py: ``mcpctl provision NAME`` as one library call (the kind of host, refused options, dispatch).

No host is contacted: the kinds' provisioners are replaced by recorders, so these tests say which one
runs with what, and that a refused request starts and writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provision.ec2 import provisioning as ec2_provisioning
from provision.errors import OptionError
from provision.host import provisioner, request
from provision.host.request import Ec2Options, ProvisionRequest, provision, provision_mode
from provision.profiles import list_profiles, new_profile, save_profile


@pytest.fixture
def calls(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Every provisioner call, as (kind, args, keywords); each returns the string "done"."""
    seen: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def recorder(kind: str) -> Any:
        async def record(*args: Any, **kwargs: Any) -> Any:
            seen.append((kind, args, kwargs))
            return "done"

        return record

    monkeypatch.setattr(provisioner, "provision_host", recorder("host"))
    monkeypatch.setattr(provisioner, "provision_sandbox", recorder("sandbox"))
    monkeypatch.setattr(ec2_provisioning, "provision_ec2", recorder("ec2"))
    return seen


def _refused(req: ProvisionRequest) -> OptionError:
    with pytest.raises(OptionError) as info:
        provision_mode(req)
    return info.value


# ---------------------------------------------------------------------------------- the kind of host


@pytest.mark.parametrize(
    ("fields", "flags"),
    [
        ({"host": "ann@h.example", "sandbox": True}, ["--host", "--sandbox"]),
        ({"sandbox": True, "ec2": True}, ["--sandbox", "--ec2"]),
        ({"host": "ann@h.example", "ec2": True}, ["--host", "--ec2"]),
    ],
)
def test_one_kind_of_host_at_a_time(mcpctl_home: Path, fields: dict[str, Any], flags: list[str]) -> None:
    error = _refused(ProvisionRequest("two", **fields))
    assert error.message == f"{' and '.join(flags)} name different kinds of host"
    assert error.hint == f"choose one of {', '.join(flags)}, not several"


def test_the_flag_given_names_the_kind(mcpctl_home: Path) -> None:
    assert provision_mode(ProvisionRequest("web", host="ann@h.example")).kind == "host"
    assert provision_mode(ProvisionRequest("box", sandbox=True)).label == "--sandbox"
    assert provision_mode(ProvisionRequest("shop", ec2=True)).kind == "ec2"


def test_without_a_flag_a_new_profile_is_a_host_and_a_saved_one_keeps_its_kind(mcpctl_home: Path) -> None:
    fresh = provision_mode(ProvisionRequest("fresh"))
    assert (fresh.kind, fresh.label, fresh.remote_dir) == ("host", "a profile without --ec2", None)
    save_profile(
        new_profile(name="box", kind="sandbox", host="127.0.0.1", port=2222, user="u", remote_dir="/srv/b")
    )
    saved = provision_mode(ProvisionRequest("box"))
    assert (saved.kind, saved.label, saved.remote_dir) == ("sandbox", "the sandbox profile 'box'", "/srv/b")


def test_a_broken_saved_profile_is_left_to_the_provisioner(mcpctl_home: Path) -> None:
    save_profile(new_profile(name="web", host="h.example", user="ann"))
    (mcpctl_home / "config" / "profiles" / "web.toml").write_text("this is [not toml\n")
    assert provision_mode(ProvisionRequest("web")).kind == "host"


# ------------------------------------------------------------------------- options that do not apply


def test_ec2_options_do_not_apply_to_another_kind(mcpctl_home: Path) -> None:
    error = _refused(
        ProvisionRequest("plain", host="ann@h.example", ec2_options=Ec2Options(region="eu-west-1"))
    )
    assert str(error) == "--region does not apply to --host: only --ec2 launches an instance; drop the option"
    error = _refused(ProvisionRequest("box", sandbox=True, ec2_options=Ec2Options(dry_run=True)))
    assert error.message == "--dry-run does not apply to --sandbox: only --ec2 has a launch plan to preview"


def test_every_option_that_does_not_apply_is_named_in_one_sentence(mcpctl_home: Path) -> None:
    req = ProvisionRequest(
        "box", sandbox=True, identity_file=Path("/k"), yes=True, ec2_options=Ec2Options(volume_gb=8)
    )
    assert str(_refused(req)) == (
        "--identity-file, --yes and --volume-gb do not apply to --sandbox: the sandbox logs in with its own "
        "client key, and the sandbox's host key is read from its own files, so there is nothing to confirm, "
        "and only --ec2 launches an instance; drop these options"
    )


def test_a_sandbox_names_the_directory_it_uses_instead_of_remote_dir(mcpctl_home: Path) -> None:
    save_profile(
        new_profile(name="box", kind="sandbox", host="127.0.0.1", port=2222, user="u", remote_dir="/srv/b")
    )
    error = _refused(ProvisionRequest("box", remote_dir="/elsewhere"))
    assert (
        error.message
        == "--remote-dir does not apply to the sandbox profile 'box': the sandbox always uses /srv/b"
    )


def test_ec2_refuses_the_login_options_mcpctl_makes_itself(mcpctl_home: Path) -> None:
    error = _refused(ProvisionRequest("shop", ec2=True, host_key="SHA256:" + "A" * 43))
    assert (
        error.message
        == "--host-key does not apply to --ec2: mcpctl makes the instance's host key and pins it itself"
    )
    assert provision_mode(ProvisionRequest("shop", ec2=True, remote_dir="/srv/shop")).kind == "ec2"


# ---------------------------------------------------------------------------------------- dispatch


@pytest.mark.anyio
async def test_a_host_request_runs_the_host_provisioner_with_its_options(calls: list[Any]) -> None:
    def confirm(host: str, port: int, fingerprint: str) -> bool:
        return True

    req = ProvisionRequest(
        "web",
        host="ann@h.example:2222",
        host_key="SHA256:" + "A" * 43,
        identity_file=Path("/keys/id"),
        remote_dir="/srv/web",
        data=[Path("/d/sales.csv")],
        columns={"operation": "CITY"},
        force=True,
    )
    assert await provision(req, confirm=confirm) == "done"
    [(kind, args, kwargs)] = calls
    assert (kind, args) == ("host", ("web",))
    assert kwargs == {
        "host_spec": "ann@h.example:2222",
        "host_key": "SHA256:" + "A" * 43,
        "identity_file": Path("/keys/id"),
        "remote_dir": "/srv/web",
        "data": [Path("/d/sales.csv")],
        "columns": {"operation": "CITY"},
        "confirm": confirm,
        "force": True,
        "on_phase": None,
    }


@pytest.mark.anyio
async def test_a_sandbox_request_runs_the_sandbox_provisioner(calls: list[Any]) -> None:
    await provision(ProvisionRequest("box", sandbox=True, data=[Path("/d/s.csv")]))
    [(kind, args, kwargs)] = calls
    assert (kind, args) == ("sandbox", ("box",))
    assert kwargs == {"data": [Path("/d/s.csv")], "columns": {}, "force": False, "on_phase": None}


@pytest.mark.anyio
async def test_an_ec2_request_runs_the_ec2_provisioner_with_its_launch_options(calls: list[Any]) -> None:
    options = Ec2Options(region="eu-west-1", instance_type="t3.small", volume_gb=20, allow_world=True)
    await provision(ProvisionRequest("shop", ec2=True, remote_dir="/srv/shop", ec2_options=options))
    [(kind, args, kwargs)] = calls
    assert (kind, args) == ("ec2", ("shop",))
    assert kwargs == {
        "remote_dir": "/srv/shop",
        "data": (),
        "columns": {},
        "force": False,
        "on_phase": None,
        "region": "eu-west-1",
        "instance_type": "t3.small",
        "ssh_cidr": None,
        "volume_gb": 20,
        "autostop_minutes": None,
        "allow_world": True,
    }


@pytest.mark.anyio
async def test_a_saved_profile_without_a_flag_runs_its_own_kind(calls: list[Any]) -> None:
    save_profile(new_profile(name="shop", kind="ec2", user="ubuntu"))
    await provision(ProvisionRequest("shop"))
    assert [kind for kind, _, _ in calls] == ["ec2"]


@pytest.mark.anyio
async def test_a_refused_request_starts_and_writes_nothing(calls: list[Any], mcpctl_home: Path) -> None:
    with pytest.raises(OptionError):
        await provision(ProvisionRequest("box", sandbox=True, yes=True))
    assert calls == [] and list_profiles() == []


@pytest.mark.anyio
async def test_an_ec2_dry_run_is_not_provisioned(calls: list[Any]) -> None:
    with pytest.raises(ValueError, match="plan_ec2"):
        await provision(ProvisionRequest("shop", ec2=True, ec2_options=Ec2Options(dry_run=True)))
    assert calls == []


def test_ec2_options_as_typed_and_as_launch_options() -> None:
    options = Ec2Options(region="eu-west-1", autostop_minutes=0, dry_run=True)
    assert options.given() == ["--region", "--autostop-minutes", "--dry-run"]
    assert options.spec_options()["autostop_minutes"] == 0
    assert Ec2Options().given() == []
    assert request.ProvisionRequest("x", yes=True, remote_dir="/r").host_options() == [
        "--remote-dir",
        "--yes",
    ]
