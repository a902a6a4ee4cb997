"""``mcpctl provision NAME`` as one library call: :func:`provision` takes a :class:`ProvisionRequest`.

A request names at most one kind of host (``--host``, ``--sandbox``, ``--ec2``); without one, the saved
profile's kind is meant. Options that mean nothing for that kind are refused here, before anything is
written or started, in one sentence naming every such option. Then the kind's own provisioner runs:
:func:`provision.host.provisioner.provision_host`, :func:`~provision.host.provisioner.provision_sandbox`
or :func:`provision.ec2.provisioning.provision_ec2`. The CLI only parses, asks and renders.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from provision.ec2 import provisioning as ec2_provisioning
from provision.ec2.provisioning import SpecOptions
from provision.errors import McpctlError, OptionError
from provision.host import provisioner
from provision.host.bootstrap import Phase
from provision.host.provisioner import ConfirmKey, ProvisionResult
from provision.profiles import list_profiles, load_profile

ProvisionKind = Literal["host", "sandbox", "ec2"]
_KIND_FLAGS: dict[str, ProvisionKind] = {"--host": "host", "--sandbox": "sandbox", "--ec2": "ec2"}


@dataclass(frozen=True)
class Ec2Options:
    """The options that only apply to an EC2 host (None: the profile's, then the default)."""

    region: str | None = None
    instance_type: str | None = None
    ssh_cidr: str | None = None
    volume_gb: int | None = None
    autostop_minutes: int | None = None
    allow_world: bool = False
    dry_run: bool = False

    def given(self) -> list[str]:
        """The options that were given, as typed on the command line."""
        values = {
            "--region": self.region,
            "--instance-type": self.instance_type,
            "--ssh-cidr": self.ssh_cidr,
            "--volume-gb": self.volume_gb,
            "--autostop-minutes": self.autostop_minutes,
            "--allow-world": self.allow_world or None,
            "--dry-run": self.dry_run or None,
        }
        return [flag for flag, value in values.items() if value is not None]

    def spec_options(self) -> SpecOptions:
        """The options that choose what to launch, as :func:`provision.ec2.provisioning.plan_ec2` takes."""
        return {
            "region": self.region,
            "instance_type": self.instance_type,
            "ssh_cidr": self.ssh_cidr,
            "volume_gb": self.volume_gb,
            "autostop_minutes": self.autostop_minutes,
            "allow_world": self.allow_world,
        }


@dataclass(frozen=True)
class ProvisionRequest:
    """What ``mcpctl provision NAME`` was asked: the kind of host and every option (None: not given)."""

    name: str
    host: str | None = None  # --host user@host[:port]
    sandbox: bool = False
    ec2: bool = False
    host_key: str | None = None
    identity_file: Path | None = None
    remote_dir: str | None = None
    data: Sequence[Path] = ()
    columns: Mapping[str, str] = field(default_factory=dict)
    yes: bool = False  # the fingerprint is accepted up front (the caller's confirm says so too)
    force: bool = False
    ec2_options: Ec2Options = field(default_factory=Ec2Options)
    http: bool = False  # also install the HTTP server (``--http``; kept up to date once installed)

    def host_options(self) -> list[str]:
        """The login and install options that were given, as typed on the command line."""
        given = {
            "--host-key": self.host_key is not None,
            "--identity-file": self.identity_file is not None,
            "--remote-dir": self.remote_dir is not None,
            "--yes": self.yes,
        }
        return [flag for flag, on in given.items() if on]


@dataclass(frozen=True)
class ProvisionMode:
    """The kind of host a request works on, and how messages name that choice.

    Attributes:
        kind: ``host``, ``sandbox`` or ``ec2``: the flag given, else the saved profile's kind.
        label: The flag given (``--sandbox``), or the saved profile (``the sandbox profile 'demo'``).
        name: The profile name.
        remote_dir: The saved profile's remote directory, when there is a saved profile.
    """

    kind: ProvisionKind
    label: str
    name: str
    remote_dir: str | None = None


def provision_mode(request: ProvisionRequest) -> ProvisionMode:
    """Tell which kind of host ``request`` works on and refuse the options that do not apply to it.

    Raises:
        OptionError: Several of --host, --sandbox and --ec2 are given, or options that mean nothing for
            the kind (one sentence naming every one and why).
    """
    mode = _mode(request)
    _refuse_options_that_do_not_apply(mode, request.host_options(), request.ec2_options.given())
    return mode


async def provision(
    request: ProvisionRequest, *, confirm: ConfirmKey | None = None, on_phase: Phase | None = None
) -> ProvisionResult:
    """Provision the host ``request`` names: check the request, then run that kind's provisioner.

    Args:
        request: What was asked (an EC2 dry run is previewed with
            :func:`provision.ec2.provisioning.plan_ec2` after :func:`provision_mode`, not run here).
        confirm: Asked before pinning a host key nobody vouched for; None refuses such a key.
        on_phase: Called with (phase, detail) as each phase ends.

    Raises:
        OptionError: See :func:`provision_mode`.
        ValueError: An EC2 dry run was asked for.
        McpctlError: As the kind's provisioner reports it (profile, host key, connection, cloud...).
    """
    served = request.http or _serves_http(request.name)  # a re-provision restarts the server too
    result = await _provision_kind(request, confirm, on_phase)
    if served:
        # Imported here: only a profile with an HTTP server pays for it.
        from provision.host.http_profile import enable_http

        profile, _ = await enable_http(result.profile, on_phase=on_phase)
        result = dataclasses.replace(result, profile=profile)
    return result


def _serves_http(name: str) -> bool:
    """Whether the saved profile ``name`` has an HTTP server on its host (``provision --http`` once)."""
    if name not in list_profiles():
        return False
    with contextlib.suppress(McpctlError):  # a broken profile is reported by the provisioner
        http = load_profile(name).http
        return http is not None and http.url is None
    return False


async def _provision_kind(
    request: ProvisionRequest, confirm: ConfirmKey | None, on_phase: Phase | None
) -> ProvisionResult:
    """Run the provisioner of the request's kind of host."""
    mode = provision_mode(request)
    if mode.kind == "sandbox":
        return await provisioner.provision_sandbox(
            request.name, data=request.data, columns=request.columns, force=request.force, on_phase=on_phase
        )
    if mode.kind == "ec2":
        if request.ec2_options.dry_run:  # the caller's mistake, not the user's
            raise ValueError("an EC2 dry run is previewed with plan_ec2(), not provisioned")
        return await ec2_provisioning.provision_ec2(
            request.name,
            remote_dir=request.remote_dir,
            data=request.data,
            columns=request.columns,
            force=request.force,
            on_phase=on_phase,
            **request.ec2_options.spec_options(),
        )
    return await provisioner.provision_host(
        request.name,
        host_spec=request.host,
        host_key=request.host_key,
        identity_file=request.identity_file,
        remote_dir=request.remote_dir,
        data=request.data,
        columns=request.columns,
        confirm=confirm,
        force=request.force,
        on_phase=on_phase,
    )


def _mode(request: ProvisionRequest) -> ProvisionMode:
    """The one kind flag given, else the saved profile's kind.

    Raises:
        OptionError: Several of --host, --sandbox and --ec2 are given.
    """
    flags = {"--host": request.host is not None, "--sandbox": request.sandbox, "--ec2": request.ec2}
    chosen = [flag for flag, on in flags.items() if on]
    if len(chosen) > 1:
        raise OptionError(
            f"{' and '.join(chosen)} name different kinds of host",
            hint=f"choose one of {', '.join(chosen)}, not several",
        )
    name = request.name
    saved = None
    if name in list_profiles():
        with contextlib.suppress(McpctlError):  # a broken profile is reported by the provisioner
            saved = load_profile(name)
    remote_dir = saved.remote_dir if saved is not None else None
    if chosen:
        return ProvisionMode(_KIND_FLAGS[chosen[0]], chosen[0], name, remote_dir)
    if saved is None:  # a new profile: the host provisioner says that it needs --host or --sandbox
        return ProvisionMode("host", "a profile without --ec2", name)
    return ProvisionMode(saved.kind, f"the {saved.kind} profile '{name}'", name, remote_dir)


def _why_host_option_does_not_apply(mode: ProvisionMode, flag: str) -> str | None:
    """Why a login or install option means nothing for ``mode`` (a clause), or None when it applies."""
    if mode.kind == "sandbox":
        if flag == "--remote-dir":
            return f"the sandbox always uses {provisioner.sandbox_remote_dir(mode.name, mode.remote_dir)}"
        return {
            "--host-key": "the sandbox's host key is read from its own files",
            "--identity-file": "the sandbox logs in with its own client key",
            "--yes": "the sandbox's host key is read from its own files, so there is nothing to confirm",
        }[flag]
    if mode.kind == "ec2":
        return {
            "--host-key": "mcpctl makes the instance's host key and pins it itself",
            "--identity-file": "mcpctl makes the instance's login key",
            "--yes": "mcpctl makes the instance's host key, so there is nothing to confirm",
        }.get(flag)
    return None


def _refuse_options_that_do_not_apply(
    mode: ProvisionMode, host_options: list[str], ec2_options: list[str]
) -> None:
    """Refuse, before anything is written or started, options that ``mode`` would silently ignore.

    Raises:
        OptionError: One sentence naming every such option, why it does not apply, and what to do.
    """
    refused = [(flag, why) for flag in host_options if (why := _why_host_option_does_not_apply(mode, flag))]
    if mode.kind != "ec2":
        launches, previews = "only --ec2 launches an instance", "only --ec2 has a launch plan to preview"
        refused += [(flag, previews if flag == "--dry-run" else launches) for flag in ec2_options]
    if not refused:
        return
    names = [flag for flag, _ in refused]
    reasons = list(dict.fromkeys(why for _, why in refused))  # the EC2 options share one reason
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    verb = "does" if len(names) == 1 else "do"
    drop = "the option" if len(names) == 1 else "these options"
    raise OptionError(
        f"{listed} {verb} not apply to {mode.label}: {', and '.join(reasons)}", hint=f"drop {drop}"
    )
