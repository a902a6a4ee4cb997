"""The phases that look only at this machine: the profile, and the key the login will use.

Both are hard failures when they cannot work (no profile, no key, a key nobody can unlock when the
client starts); a key that others can read is reported and the rest still runs.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import asyncssh

from provision.doctor.context import Diagnosis, since
from provision.doctor.report import Check, shown
from provision.errors import KeyNeedsPassphrase, ProfileError, SandboxError
from provision.layout import RemoteLayout
from provision.profiles import Profile, load_profile, profiles_dir
from provision.ssh import sandbox
from provision.ssh.keys import read_identity
from provision.ssh.profile_target import target_for
from provision.ssh.sandbox import SandboxInfo

_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")  # what ssh tries without an identity file


# ------------------------------------------------------------------------------------------ profile


def check_profile(dx: Diagnosis) -> None:
    """Load the profile; leave it (at the port its host is on now) and its login target in ``dx``."""
    started = time.perf_counter()
    try:
        saved = load_profile(dx.name)
        # what `mcpctl connect` passes the server: refused there (two data files...), refused here
        RemoteLayout.of(saved.remote_dir).server_args(saved.data, saved.columns, saved.server_args)
        target = target_for(saved)  # a sandbox profile follows its sandbox to its current port
        dx.sandbox = _running_sandbox(saved)
    except (ProfileError, SandboxError) as exc:
        dx.fail("profile", started, f"cannot use profile '{dx.name}'", str(exc))
    profile = saved.model_copy(update={"port": target.port})
    dx.profile, dx.target = profile, target
    path = shown(profiles_dir() / f"{dx.name}.toml")
    detail = f"{path}: {profile.kind} {target.user}@{target.address}, server in {profile.remote_dir}"
    dx.add(Check("profile", True, since(started), detail + _sandbox_note(dx, saved.port)))


def _running_sandbox(profile: Profile) -> SandboxInfo | None:
    """The running sandbox, for a sandbox profile; None for other profiles and a stopped sandbox.

    Raises:
        ProfileError, SandboxError: The sandbox's directory cannot be created.
    """
    if profile.kind != "sandbox":
        return None
    return sandbox.status()


def _sandbox_note(dx: Diagnosis, saved_port: int) -> str:
    assert dx.profile is not None and dx.target is not None
    if dx.profile.kind != "sandbox":
        return ""
    if dx.sandbox is None:
        return " (the sandbox is not running)"
    if dx.target.port != saved_port:
        return f" (the sandbox moved from port {saved_port}: the profile follows it)"
    return ""


# ----------------------------------------------------------------------------------------- key file


def check_key_file(dx: Diagnosis) -> None:
    """The identity file exists, is a private key the client can use unattended, and only we can read it."""
    assert dx.target is not None
    started = time.perf_counter()
    key = dx.target.identity_file
    if key is None:
        _check_default_keys(dx, started)
        return
    where = f"set identity_file in profile '{dx.name}' to the private key the host authorises"
    if not key.exists():
        dx.fail("key file", started, f"the identity file {shown(key)} does not exist", f"{where}.")
    if not key.is_file() or not os.access(key, os.R_OK):
        dx.fail(
            "key file",
            started,
            f"the identity file {shown(key)} is not a file this user can read",
            f"as its owner run `chmod 600 {key}`, or {where}.",
        )
    kind = _key_algorithm(dx, key, started, where)
    mode = stat.S_IMODE(key.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        # asyncssh does not mind, but OpenSSH (ssh-style entries, and users testing by hand) refuses.
        dx.flag(
            "key file",
            started,
            f"{shown(key)} ({kind}) has mode {mode:04o}: ssh refuses a private key others can read",
            f"run `chmod 600 {key}`.",
        )
        return
    dx.add(Check("key file", True, since(started), f"{shown(key)}: {kind} private key, mode {mode:04o}"))


def _check_default_keys(dx: Diagnosis, started: float) -> None:
    assert dx.target is not None
    found = [p for p in (Path.home() / ".ssh" / n for n in _DEFAULT_KEYS) if p.is_file()]
    helpers = [
        h
        for h, on in (
            ("the ssh-agent", dx.target.use_agent),
            ("~/.ssh/config", dx.target.use_ssh_config),
        )
        if on
    ]
    if not found and not helpers:
        dx.fail(
            "key file",
            started,
            "the profile names no identity_file and ~/.ssh has no id_ed25519, id_ecdsa or id_rsa",
            f"set identity_file in profile '{dx.name}' to the private key the host authorises.",
        )
    used = ", ".join([*(shown(p) for p in found), *helpers])
    dx.add(Check("key file", True, since(started), f"no identity_file in the profile; trying {used}"))


def _key_algorithm(dx: Diagnosis, key: Path, started: float, where: str) -> str:
    assert dx.target is not None
    try:
        return read_identity(key, profile=dx.name).algorithm.decode("ascii")
    except KeyNeedsPassphrase:
        if not dx.target.use_agent:
            dx.fail(
                "key file",
                started,
                f"{shown(key)} is encrypted and nobody can type its passphrase when the client starts",
                f"load it with `ssh-add {key}` and set use_agent = true in profile '{dx.name}'.",
            )
        return "encrypted (the ssh-agent signs)"
    except asyncssh.KeyImportError as exc:
        dx.fail(
            "key file",
            started,
            f"{shown(key)} is not a private key ({exc})",
            f"{where} (the file without .pub).",
        )
    except (OSError, ValueError) as exc:
        dx.fail("key file", started, f"cannot read {shown(key)} ({exc})", f"{where}.")


__all__ = ["check_key_file", "check_profile"]
