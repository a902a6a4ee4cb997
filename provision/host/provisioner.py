"""What ``mcpctl provision`` and ``mcpctl sync`` do, as library calls the CLI renders.

Provisioning an existing host (or the sandbox): make or update the profile, pin the host key without
trusting the first key seen, then one connection does probe, sync, environment and self-check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provision import sync as syncing  # looked up at call time: a test can wrap syncing.sync
from provision.errors import HostKeyError, McpctlError, ProfileError
from provision.host import warm
from provision.host.bootstrap import BootstrapReport, Phase, bootstrap
from provision.host.hostspec import parse_host_spec
from provision.layout import RemoteLayout
from provision.profiles import (
    Profile,
    known_hosts_path,
    list_profiles,
    load_profile,
    new_profile,
    save_profile,
)
from provision.ssh import hostkeys, sandbox
from provision.ssh.profile_target import target_for
from provision.ssh.remote import connect

if TYPE_CHECKING:
    from provision.sync import ProgressCallback, SyncReport

# Asked before pinning a key nobody vouched for: (host, port, fingerprint) -> accept?
ConfirmKey = Callable[[str, int, str], bool]


@dataclass(frozen=True)
class ProvisionResult:
    profile: Profile
    pinned: str | None  # fingerprint pinned by this run, None when the existing pin was used
    report: BootstrapReport


def project_root() -> Path:
    """The local checkout whose code and lock file are installed on hosts.

    Raises:
        McpctlError: mcpctl runs from an installed wheel, not a checkout (no ``uv.lock`` beside it).
    """
    root = Path(__file__).resolve().parents[2]  # provision/host/provisioner.py -> the checkout
    if not (root / "uv.lock").is_file() or not (root / "pyproject.toml").is_file():
        raise McpctlError(
            f"{root} has no uv.lock: mcpctl provisions hosts from a project checkout",
            hint="run it from a clone of the repository (`uv run mcpctl ...`)",
        )
    return root


def server_args(profile: Profile) -> list[str]:
    """The server's data and column arguments as the client entry passes them (without the python)."""
    return RemoteLayout.of(profile.remote_dir).server_args(profile.data, profile.columns, profile.server_args)


def sandbox_remote_dir(name: str, saved: str | None = None) -> str:
    """Where a sandbox profile installs: where its saved profile says, else ``SANDBOX/hosts/NAME``.

    Raises:
        SandboxError: The sandbox's directory cannot be created.
    """
    return saved or str(sandbox.sandbox_dir() / "hosts" / name)


def _existing(name: str) -> Profile | None:
    """The saved profile ``name``, or None for a new one (a malformed file still raises)."""
    return load_profile(name) if name in list_profiles() else None


def _taken_by_another_kind(existing: Profile, wanted: str) -> ProfileError:
    """The name is taken by a profile of another kind: say whose, and the real ways out.

    ``provision --force`` only reinstalls, so the hint names what frees the name. An ec2 profile is
    freed with ``destroy``: removing only the profile would leave its instance running and billed.
    """
    name = existing.name
    where = f" for {existing.user}@{existing.host}:{existing.port}" if existing.host else ""
    if existing.kind == "ec2":
        free = f"`mcpctl destroy {name}` (it also terminates the instance)"
    else:
        free = f"`mcpctl profile remove {name}`"
    return ProfileError(
        f"profile '{name}' is a {existing.kind} profile{where}, not a {wanted} one",
        hint=f"choose another name, or free this one first with {free}",
    )


def _has_pin(profile: Profile) -> bool:
    path = known_hosts_path(profile.name)
    return path.is_file() and path.stat().st_size > 0


async def pin_for_host(
    profile: Profile, *, host_key: str | None, confirm: ConfirmKey | None, refresh: bool
) -> str | None:
    """Pin the host key of ``profile``'s host unless it already is (or ``refresh`` asks to re-pin).

    With ``host_key`` (a public key line or SHA256 fingerprint) the server must present exactly that
    key. Without it the fingerprint is shown through ``confirm``; no ``confirm`` means refuse.

    Raises:
        HostKeyError: The key does not match, or nobody confirmed it.
        ConnectError: The host cannot be reached.
    """
    if _has_pin(profile) and not refresh and host_key is None:
        return None
    assert profile.host is not None
    if host_key is not None:
        wanted = hostkeys.parse_host_key(host_key)
        key = await hostkeys.verify_host_key(profile.host, profile.port, wanted, name=profile.name)
    else:
        key = await hostkeys.fetch_host_key(profile.host, profile.port, name=profile.name)
        if confirm is None or not confirm(profile.host, profile.port, key.fingerprint):
            raise HostKeyError(
                f"the host key of {profile.host}:{profile.port} ({key.fingerprint}) was not confirmed",
                hint=f"check it with the host's owner and re-run with --host-key {key.fingerprint}",
            )
    hostkeys.pin_host_key(
        known_hosts_path(profile.name),
        profile.host,
        profile.port,
        key.public_key_line,
        alias=profile.host_key_alias,
    )
    return key.fingerprint


async def bootstrap_profile(profile: Profile, *, force: bool, on_phase: Phase | None) -> BootstrapReport:
    """Over one connection to the profile's (pinned) host: probe, sync code and data, environment, check.

    Raises:
        HostKeyError, ConnectError, ProfileError, RemoteError: See :func:`bootstrap`.
    """
    root = project_root()
    async with connect(target_for(profile)) as remote:
        code = False

        async def sync_code() -> bool:
            nonlocal code
            report = await syncing.sync(
                remote, syncing.project_sources(root, profile.data, profile.remote_dir)
            )
            code = warm.code_changed(report, profile.remote_dir)
            return report.changed

        report = await bootstrap(
            remote,
            remote_dir=profile.remote_dir,
            project_root=root,
            server_args=server_args(profile),
            sync_code=sync_code,
            force=force,
            on_phase=on_phase,
        )
        installed = any(
            phase == "environment" and detail != "up to date" for phase, _, detail in report.phases
        )
        if code or installed:
            started = time.perf_counter()
            detail = await warm.replace_warm_server(remote, profile.remote_dir)
            report.phases.append(("warm server", time.perf_counter() - started, detail))
            if on_phase is not None:
                on_phase("warm server", detail)
        return report


def merged_profile(
    existing: Profile | None, fields: Mapping[str, object], columns: Mapping[str, str], data: Sequence[Path]
) -> Profile:
    """The profile to save: the existing one updated with what was given on the command line."""
    values: dict[str, object] = existing.model_dump() if existing is not None else {}
    values.update({k: v for k, v in fields.items() if v is not None})
    if data:
        values["data"] = [Path(p).expanduser().absolute() for p in data]
    if columns:
        values["columns"] = {**dict(values.get("columns") or {}), **columns}  # type: ignore[call-overload]
    # new_profile names each invalid field and says why (pydantic's own first line names neither).
    return new_profile(**values)


async def provision_host(
    name: str,
    *,
    host_spec: str | None = None,
    host_key: str | None = None,
    identity_file: Path | None = None,
    remote_dir: str | None = None,
    data: Sequence[Path] = (),
    columns: Mapping[str, str] | None = None,
    confirm: ConfirmKey | None = None,
    force: bool = False,
    on_phase: Phase | None = None,
) -> ProvisionResult:
    """Provision an existing Linux host reachable over SSH (``--host user@host[:port]``).

    Raises:
        ProfileError: No host given for a new profile, a host given for a sandbox or ec2 profile,
            or invalid settings.
        HostKeyError, ConnectError, RemoteError: See :func:`pin_for_host` and :func:`bootstrap`.
    """
    existing = _existing(name)
    fields: dict[str, object] = {"name": name, "kind": "host"}
    if host_spec is not None:
        if existing is not None and existing.kind != "host":
            raise _taken_by_another_kind(existing, "host")
        user, host, port = parse_host_spec(host_spec)
        fields.update(user=user, host=host, port=port)
    elif existing is None:
        raise ProfileError(
            f"profile '{name}' does not exist yet", hint="pass --host user@host[:port] (or --sandbox)"
        )
    elif existing.kind != "host":
        fields["kind"] = existing.kind
    fields.update(identity_file=identity_file, remote_dir=remote_dir)
    profile = merged_profile(existing, fields, columns or {}, data)
    moved = existing is not None and (existing.host, existing.port) != (profile.host, profile.port)
    pinned = await pin_for_host(profile, host_key=host_key, confirm=confirm, refresh=moved)
    if on_phase is not None and pinned:
        on_phase("host key", f"pinned {pinned}")
    save_profile(profile)
    report = await bootstrap_profile(profile, force=force, on_phase=on_phase)
    return ProvisionResult(profile, pinned, report)


async def provision_sandbox(
    name: str,
    *,
    data: Sequence[Path] = (),
    columns: Mapping[str, str] | None = None,
    force: bool = False,
    on_phase: Phase | None = None,
) -> ProvisionResult:
    """Provision the local sandbox host: start it if needed, pin its key, bootstrap it.

    The sandbox's key is read from its own files, so the pin involves no trust on first use.

    Raises:
        ProfileError: The name belongs to a host or ec2 profile (refused before the sandbox starts).
        SandboxError: The sandbox cannot start.
        RemoteError, ConnectError: See :func:`bootstrap`.
    """
    existing = _existing(name)
    if existing is not None and existing.kind != "sandbox":
        raise _taken_by_another_kind(existing, "sandbox")  # before the sandbox is started for nothing
    info = await asyncio.to_thread(sandbox.up)
    fields: dict[str, object] = {
        "name": name,
        "kind": "sandbox",
        "host": info.host,
        "port": info.port,
        "user": info.user,
        "identity_file": info.client_key,
        "remote_dir": sandbox_remote_dir(name, existing.remote_dir if existing else None),
    }
    profile = merged_profile(existing, fields, columns or {}, data)
    hostkeys.pin_host_key(known_hosts_path(name), info.host, info.port, info.host_key_line)
    if on_phase is not None:
        on_phase("sandbox", f"{info.host}:{info.port}, host key pinned from the sandbox's own files")
    save_profile(profile)
    report = await bootstrap_profile(profile, force=force, on_phase=on_phase)
    return ProvisionResult(profile, None, report)


async def sync_profile(
    name: str,
    *,
    delete: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    follow_links: bool = False,
) -> SyncReport:
    """Sync code and data of profile ``name`` to its host (plan, then apply).

    ``follow_links`` also sends file symlinks that lead out of the project (see ``project_sources``).

    Raises:
        ProfileError, ConnectError, HostKeyError, RemoteError: As the steps report them.
        SourceChangedError: Local files kept changing while they were sent (the rest is done).
    """
    profile = load_profile(name)
    sources = syncing.project_sources(
        project_root(), profile.data, profile.remote_dir, follow_links=follow_links
    )
    async with connect(target_for(profile)) as remote:
        report = await syncing.sync(remote, sources, delete=delete, dry_run=dry_run, progress=progress)
        if not dry_run and warm.code_changed(report, profile.remote_dir):
            await warm.replace_warm_server(remote, profile.remote_dir)  # the next session runs the new code
        return report
