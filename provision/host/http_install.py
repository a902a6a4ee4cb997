"""Installing, restarting and inspecting a profile's HTTP server on its host, over one SSH connection.

Two ways to run it, chosen by the host:

- **systemd** (the host booted with systemd: ``/run/systemd/system`` exists): the hardened unit of
  :func:`provision.host.http_service.unit_text`, enabled and restarted; root or passwordless sudo.
- **process** (the sandbox, a container, any host without systemd): a background process in a session
  of its own, with a pid file; a re-provision stops the recorded process (only if it is ours) and
  starts a new one.

The key is written with ``umask 077`` through stdin (never on a command line), into a 0700 directory.
"""

from __future__ import annotations

from typing import Literal

from provision.errors import RemoteError
from provision.host.http_reach import Health, server_base, wait_healthy
from provision.host.http_service import LAUNCHER, HttpService, unit_text
from provision.ssh.remote import Remote

ServiceMode = Literal["systemd", "process"]
READY_TIMEOUT = 120.0  # seconds: the first start converts the data file
_WRITE = 'umask {umask} && cat > "$1.tmp" && mv -f "$1.tmp" "$1"'
_STOP = r"""
pid_file=$1 marker=$2
[ -f "$pid_file" ] || exit 0
pid=$(cat "$pid_file")
case "$pid" in ''|*[!0-9]*) rm -f "$pid_file"; exit 0;; esac
if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$marker"; then
  kill -TERM "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$pid" 2>/dev/null
  echo stopped
fi
rm -f "$pid_file"
"""
_ALIVE = r"""
pid=$(cat "$1" 2>/dev/null) || exit 1
case "$pid" in ''|*[!0-9]*) exit 1;; esac
tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$2"
"""


async def detect_mode(remote: Remote) -> ServiceMode:
    """``systemd`` when the host runs it (``/run/systemd/system``, as sd_booted checks), else ``process``."""
    if remote.target.sandbox:
        return "process"
    found = await remote.run(["test", "-d", "/run/systemd/system"], check=False)
    return "systemd" if found.exit_status == 0 else "process"


async def write_key(remote: Remote, service: HttpService, key: str) -> None:
    """Put the API key in its 0600 file on the host (directory 0700), through stdin.

    Raises:
        RemoteError: The directory or file cannot be written.
    """
    directory = str(service.directory)
    await remote.run(["mkdir", "-p", directory])
    await remote.run(["chmod", "700", directory])
    await remote.run(
        ["sh", "-c", _WRITE.format(umask="077"), "sh", str(service.key_path)],
        input=key + "\n",
        secrets=[key],
    )


# ------------------------------------------------------------------------------------------ systemd


def _as_root(remote: Remote) -> list[str]:
    return [] if remote.target.user == "root" else ["sudo", "-n"]


async def _check_sudo(remote: Remote) -> None:
    if remote.target.user == "root":
        return
    if (await remote.run(["sudo", "-n", "true"], check=False)).exit_status != 0:
        user = remote.target.user
        raise RemoteError(
            f"'{user}' on {remote.target.address} cannot run sudo without a password, which installing "
            "a systemd service needs",
            hint=f"give '{user}' passwordless sudo, or provision as root (--host root@HOST)",
        )


async def install_unit(remote: Remote, service: HttpService) -> None:
    """Write the unit, reload systemd, enable the service and (re)start it.

    Raises:
        ProfileError: A path cannot be written into a unit.
        RemoteError: No root or sudo, or a systemctl step failed.
    """
    text = unit_text(service)
    await _check_sudo(remote)
    root = _as_root(remote)
    await remote.run(
        [*root, "sh", "-c", _WRITE.format(umask="022"), "sh", str(service.unit_path)], input=text
    )
    await remote.run([*root, "systemctl", "daemon-reload"], timeout=60)
    await remote.run([*root, "systemctl", "enable", service.unit], timeout=60)
    await remote.run([*root, "systemctl", "restart", service.unit], timeout=60)


async def unit_state(remote: Remote, service: HttpService) -> str:
    """``systemctl is-active``: active, activating, failed, inactive..."""
    found = await remote.run(["systemctl", "is-active", service.unit], check=False)
    return found.stdout.strip() or "unknown"


async def _unit_failed(remote: Remote, service: HttpService) -> str | None:
    if await unit_state(remote, service) != "failed":
        return None
    journal = await remote.run(
        [*_as_root(remote), "journalctl", "-u", service.unit, "-n", "15", "--no-pager", "-o", "cat"],
        check=False,
    )
    return f"{service.unit} failed; its journal ends: {journal.stdout.strip()[-1500:] or '(empty)'}"


# ---------------------------------------------------------------------------- background process


async def stop_process(remote: Remote, service: HttpService) -> bool:
    """Stop the recorded background server if it is ours (its argv names our key file); True if it ran."""
    marker = str(service.key_path)
    found = await remote.run(["sh", "-c", _STOP, "sh", str(service.pid_path), marker], timeout=30)
    return "stopped" in found.stdout


async def process_running(remote: Remote, service: HttpService) -> bool:
    """Whether the recorded background server is alive (and is ours)."""
    marker = str(service.key_path)
    found = await remote.run(["sh", "-c", _ALIVE, "sh", str(service.pid_path), marker], check=False)
    return found.exit_status == 0


async def start_process(remote: Remote, service: HttpService) -> int:
    """Start the server in a session of its own (it outlives this connection); return its pid.

    Raises:
        RemoteError: The venv's python is missing or the launcher failed.
    """
    argv = service.argv(str(service.key_path))
    started = await remote.run(
        [argv[0], "-c", LAUNCHER, str(service.pid_path), str(service.log_path), *argv], timeout=60
    )
    return int(started.stdout.strip().splitlines()[-1])


async def _process_gone(remote: Remote, service: HttpService) -> str | None:
    if await process_running(remote, service):
        return None
    log = await remote.run(["tail", "-n", "15", str(service.log_path)], check=False)
    return f"the server exited; {service.log_path} ends: {log.stdout.strip()[-1500:] or '(empty)'}"


# ------------------------------------------------------------------------------------------- both


async def install(remote: Remote, service: HttpService, key: str, mode: ServiceMode) -> Health:
    """Install (or update) and (re)start the server, then wait until ``/health`` says it is ready.

    Raises:
        ProfileError: The unit cannot name a path.
        RemoteError: A step failed, or the server stopped or was not ready in time (with its log).
        ConnectError, OptionError: The health check's forward failed.
    """
    await write_key(remote, service, key)
    if mode == "systemd":
        await install_unit(remote, service)
    else:
        await stop_process(remote, service)
        await start_process(remote, service)

    async def gone() -> str | None:
        if mode == "systemd":
            return await _unit_failed(remote, service)
        return await _process_gone(remote, service)

    async with server_base(remote, service.port) as base:
        return await wait_healthy(base, service.name, within=READY_TIMEOUT, gone=gone)


async def state(remote: Remote, service: HttpService, mode: ServiceMode) -> str:
    """The service's state as the host sees it: systemd's word, or ``running`` / ``stopped``."""
    if mode == "systemd":
        return await unit_state(remote, service)
    return "running" if await process_running(remote, service) else "stopped"


__all__ = [
    "READY_TIMEOUT",
    "ServiceMode",
    "detect_mode",
    "install",
    "install_unit",
    "process_running",
    "start_process",
    "state",
    "stop_process",
    "unit_state",
    "write_key",
]
