"""The config entry phase: find the client's entry for the profile and judge whether it can start.

The entry decides what the spawn phase runs. A missing or unreadable entry is reported and the
default command (``mcpctl connect NAME``) is checked instead, so one run still shows everything else.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from provision.clients import document, entries, locations
from provision.doctor.context import Diagnosis, since
from provision.doctor.launch import Launch, default_launch, program, ssh_port
from provision.doctor.report import Check, message_of, shown
from provision.errors import ClientConfigError


def check_config_entry(dx: Diagnosis) -> None:
    """Record the entry's check and leave what the client starts in ``dx.launch``."""
    started = time.perf_counter()
    check, dx.launch = _find_entry(dx)
    dx.add(dataclasses.replace(check, seconds=since(started)))


def _entry_check(ok: bool, detail: str, fix: str | None = None, *, warning: bool = False) -> Check:
    """A check of the config entry phase (its time is filled in when it is recorded)."""
    return Check("config entry", ok, 0.0, detail, fix, warning=warning)


def _find_entry(dx: Diagnosis) -> tuple[Check, Launch]:
    fallback = default_launch(dx.name)
    instead = f"checking `{fallback.describe()}` instead"
    try:
        path = locations.chosen_config_path(dx.config_path, dx.client)
    except ClientConfigError as exc:
        return _entry_check(False, exc.message, "name the config file with --config-path."), fallback
    file = shown(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
        data = document.parse_config(text, name=file)
    except FileNotFoundError:
        detail = f"{file} does not exist, so {dx.app} starts no server for '{dx.name}'; {instead}"
        fix = f"add the entry with {dx.config_command}, then restart {dx.app}."
        return _entry_check(True, detail, fix, warning=True), fallback
    except (OSError, UnicodeDecodeError, ClientConfigError) as exc:
        detail = f"{message_of(exc)}; {dx.app} cannot read any server from it; {instead}"
        fix = f"repair {file} by hand (or move it away), then run {dx.config_command}."
        return _entry_check(False, detail, fix), fallback
    servers = data.get(document.SERVERS_KEY, {})
    key = _pick(dx, servers)
    if key is None:
        detail = f"{file} has no entry for profile '{dx.name}'; {instead}"
        fix = f"add it with {dx.config_command}, then restart {dx.app}."
        return _entry_check(True, detail, fix, warning=True), fallback
    return _judge(dx, key, servers[key], file, fallback)


def _pick(dx: Diagnosis, servers: Mapping[str, object]) -> str | None:
    """Our entry for this profile: ``sales-NAME``, else any entry of ours that runs this profile."""
    default = entries.default_server_name(dx.name)
    mine = [k for k, v in servers.items() if entries.is_mcpctl_entry(v) and _runs_profile(dx, v)]
    if default in mine or (default in servers and not mine):
        return default  # under our name, even if someone else wrote it: it is what the client runs
    return mine[0] if mine else None


def _runs_profile(dx: Diagnosis, entry: object) -> bool:
    assert dx.profile is not None
    if not isinstance(entry, dict):
        return False
    args, command = entry.get("args"), entry.get("command")
    if not isinstance(args, list) or not isinstance(command, str):
        return False
    if program(command) == "mcpctl":
        return args[1:2] == [dx.name]
    login = f"{dx.profile.user}@{dx.profile.host}"
    if login not in args:
        return False
    line = str(args[-1])
    try:
        words = shlex.split(line)  # the remote command quotes a remote_dir holding spaces or quotes
    except ValueError:
        words = [line]
    return any(dx.profile.remote_dir in word for word in words)


def _judge(dx: Diagnosis, key: str, entry: object, file: str, fallback: Launch) -> tuple[Check, Launch]:
    if not isinstance(entry, dict):
        detail = f"entry '{key}' in {file} is not an object; {dx.app} skips it"
        return _entry_check(False, detail, f"rewrite it with {dx.config_command}."), fallback
    command, args, env = entry.get("command"), entry.get("args", []), entry.get("env", {})
    if (
        not isinstance(command, str)
        or not command
        or not isinstance(args, list)
        or not all(isinstance(a, str) for a in args)
        or not isinstance(env, dict)
        or not all(isinstance(v, str) for v in env.values())
    ):
        detail = f"entry '{key}' in {file} needs a command string, a list of string args and a string env"
        return _entry_check(False, detail, f"rewrite it with {dx.config_command}."), fallback
    launch = Launch(command, tuple(args), dict(env), f"entry '{key}'")
    runs = f"entry '{key}' in {file} runs {launch.describe()}"
    problem = command_problem(dx, command, env)
    if problem is not None:
        hard, what, fix = problem
        return _entry_check(not hard, f"{runs}; {what}", fix, warning=not hard), launch
    if not entries.is_mcpctl_entry(entry):
        what = f"{runs}, an entry mcpctl did not write"
        fix = f"if it should run profile '{dx.name}', replace it with {dx.config_command} --force."
        return _entry_check(True, what, fix, warning=True), launch
    if not _runs_profile(dx, entry):
        what = f"{runs}, which is not profile '{dx.name}'"
        return _entry_check(False, what, f"rewrite it with {dx.config_command}."), launch
    stale = stale_port(dx, launch)
    if stale is not None:
        dx.stale_entry_fix = (
            f"run `mcpctl config {dx.client} {dx.name} --style ssh` again, then restart {dx.app}."
        )
        return _entry_check(False, f"{runs}; {stale}", dx.stale_entry_fix), launch
    return _entry_check(True, runs), launch


def stale_port(dx: Diagnosis, launch: Launch) -> str | None:
    """What is wrong when an ssh-style entry connects to another port than the profile's, else None.

    The port is baked into the OpenSSH command line: a sandbox restarted on another port (or a
    profile edited since) leaves the entry knocking at the old one.
    """
    assert dx.profile is not None and dx.target is not None
    port = ssh_port(launch.args) if launch.style == "ssh" else None
    if port is None or port == dx.target.port:
        return None
    if dx.profile.kind == "sandbox":
        return f"the sandbox now listens on port {dx.target.port} but the entry says {port}"
    return f"profile '{dx.name}' says port {dx.target.port} but the entry says {port}"


def command_problem(dx: Diagnosis, command: str, env: Mapping[str, str]) -> tuple[bool, str, str] | None:
    """(hard, what, fix) when the entry's command cannot be started as written, else None."""
    rewrite = f"rewrite the entry with an absolute path that exists: {dx.config_command}."
    if not os.path.isabs(command):
        # The apps search their own PATH, usually shorter than a login shell's.
        found = shutil.which(command, path=env.get("PATH") or os.environ.get("PATH"))
        if found is None:
            return (
                True,
                f"`{command}` is not on PATH: the client fails with `spawn {command} ENOENT`",
                rewrite,
            )
        return (
            False,
            f"`{command}` is looked up on PATH, and the client's PATH is often shorter than a shell's",
            rewrite,
        )
    path = Path(command)
    if not path.exists():
        return True, f"{command} does not exist: the client fails with `spawn {command} ENOENT`", rewrite
    if not path.is_file():
        return True, f"{command} is not a file", rewrite
    if os.name == "posix" and not os.access(path, os.X_OK):
        return True, f"{command} is not executable", f"run `chmod +x {command}`, or {rewrite}"
    return None


__all__ = ["check_config_entry", "command_problem", "stale_port"]
