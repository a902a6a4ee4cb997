"""``mcpctl provision``: a full first install, then re-runs of an already-provisioned host.

Two hosts, each with its own fresh ``MCPCTL_HOME`` and remote directory:

- a real OpenSSH sshd on 127.0.0.1 (``tests/sshd.py``);
- the sandbox host (``mcpctl sandbox``), started for the run and stopped after it.

On each: one first provision (probe, sync, pip installs uv, ``uv sync --frozen``, self-check), then
``--repeat`` re-runs through the library (``provisioner.provision_*`` in a fresh event loop each) and as
many through the command line (``mcpctl provision NAME`` as a subprocess: interpreter start-up and
imports included), interleaved. Goal: a re-run of an up-to-date host in under 2 s (median). The baseline
is the floor every re-run pays at least once: a fresh OpenSSH login running ``true``.

What is installed is a copy of the checkout taken at the start (the files ``mcpctl sync`` sends), and
the command line runs from that copy too: a re-run is a no-op only while the code does not change, and
an edit saved during the run would otherwise make a re-run send files and repeat the self-check. The
table still counts the re-runs that found nothing to do.

As root the sshd host is reached as a separate account without rc files (``mcpctl-bench``, created if
missing), as ``bench sync`` does, so that the table measures mcpctl, not this machine's ``~/.bashrc``;
that account's uv cache starts empty, so its first install downloads every wheel. ``--as-me`` logs in
as the current user instead. Usage: ``python -m bench provision [--repeat N] [--as-me] [--skip-sandbox]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from rich.console import Console
from rich.table import Table

from provision.host import provisioner
from provision.host.provisioner import ProvisionResult
from provision.profiles import known_hosts_path
from provision.ssh import sandbox
from provision.sync import project_sources
from provision.sync.scan import local_manifest
from tests.sshd import ensure_quiet_user, running_sshd, ssh_command

GOAL_S = 2.0
REPO = Path(__file__).resolve().parent.parent
# `mcpctl` as its console script runs it, but from the current directory's checkout.
MCPCTL = [sys.executable, "-c", "from provision.cli import app; app(prog_name='mcpctl')"]
RUN_TIMEOUT = 1800.0  # seconds for one provision (a first install on a cold cache downloads every wheel)


@dataclass
class HostResult:
    """What was measured on one host."""

    host: str
    login: str
    first_s: float = 0.0
    first_phases: list[tuple[str, float, str]] = field(default_factory=list)
    library: list[float] = field(default_factory=list)
    library_noops: int = 0
    cli: list[float] = field(default_factory=list)
    cli_noops: int = 0
    floor: list[float] = field(default_factory=list)


def _freeze_checkout(destination: Path) -> Path:
    """Copy the files ``mcpctl sync`` sends (and the ignore file) to ``destination``."""
    code = project_sources(REPO, [], "/checkout")[0]
    for rel, entry in local_manifest(code, hash_files=False).files.items():
        assert entry.local_path is not None
        (destination / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(entry.local_path, destination / rel)
    if (REPO / ".mcpignore").is_file():
        shutil.copy2(REPO / ".mcpignore", destination / ".mcpignore")
    return destination


@contextmanager
def _from_checkout(checkout: Path) -> Iterator[None]:
    """Provision from ``checkout`` here (the command line runs from it: see :func:`_cli`)."""
    saved_root = provisioner.project_root
    provisioner.project_root = lambda: checkout
    try:
        yield
    finally:
        provisioner.project_root = saved_root


@contextmanager
def _home(path: Path) -> Iterator[Path]:
    """Point MCPCTL_HOME at ``path`` for the library calls and the subprocesses started meanwhile."""
    old = os.environ.get("MCPCTL_HOME")
    os.environ["MCPCTL_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("MCPCTL_HOME", None)
        else:
            os.environ["MCPCTL_HOME"] = old


def _timed(call: Callable[[], ProvisionResult]) -> tuple[float, ProvisionResult]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def _library(provision: Callable[[], ProvisionResult]) -> tuple[float, bool, str]:
    """Time one re-run; return (seconds, whether it was a no-op, its phases in one line)."""
    seconds, result = _timed(provision)
    phases = "; ".join(f"{name}: {detail}" for name, _, detail in result.report.phases)
    return seconds, result.report.up_to_date, phases


def _cli(args: list[str], checkout: Path) -> tuple[float, bool, str]:
    """Time ``mcpctl provision ARGS`` run from ``checkout`` (``python -c`` imports from its cwd first,
    so that checkout's ``provision`` runs and provisions that checkout)."""
    started = time.perf_counter()
    done = subprocess.run(
        [*MCPCTL, "provision", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=checkout,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"mcpctl provision {' '.join(args)} failed:\n{done.stderr}")
    report = json.loads(done.stdout)
    phases = "; ".join(f"{p['phase']}: {p['detail']}" for p in report["phases"])
    return seconds, bool(report["up_to_date"]), phases


def _ssh_true(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([*command, "true"], check=True, stdin=subprocess.DEVNULL, timeout=60, capture_output=True)
    return time.perf_counter() - started


def _ssh_command(host: str, port: int, user: str, key: Path, known_hosts: Path) -> list[str]:
    return [*ssh_command(port, key, known_hosts), f"{user}@{host}"]


def _rerun(
    result: HostResult,
    repeat: int,
    library: Callable[[], ProvisionResult],
    cli_args: list[str],
    floor: list[str],
    console: Console,
) -> None:
    """Interleave library re-runs, CLI re-runs and the ssh floor, so that background load hits all."""
    for i in range(repeat):
        console.print(f"  re-run {i + 1}/{repeat}")
        seconds, noop, phases = _library(library)
        result.library.append(seconds)
        result.library_noops += noop
        if not noop:
            console.print(f"    [yellow]library re-run was not a no-op[/yellow]: {phases}")
        seconds, noop, phases = _cli(cli_args, provisioner.project_root())
        result.cli.append(seconds)
        result.cli_noops += noop
        if not noop:
            console.print(f"    [yellow]CLI re-run was not a no-op[/yellow]: {phases}")
        result.floor.append(_ssh_true(floor))


def bench_sshd(work: Path, repeat: int, as_me: bool, console: Console) -> HostResult:
    """First provision and re-runs of a real sshd's host (this machine, over loopback)."""
    user = None if as_me else ensure_quiet_user()
    work.mkdir(mode=0o755)
    remote_base = work / "remote"
    remote_base.mkdir(mode=0o755)
    if user is not None:
        shutil.chown(remote_base, user=user)
    with running_sshd(work / "sshd", other_logins=[user] if user else []) as server, _home(work / "home"):
        login = user or server.user
        host_key = server.known_hosts.read_text().split(None, 1)[1].strip()  # drop "[127.0.0.1]:PORT"
        result = HostResult("OpenSSH sshd", login)
        name = "bench-sshd"
        console.print(f"sshd on {server.host}:{server.port}: first provision as {login}")

        async def first() -> ProvisionResult:
            with anyio.fail_after(RUN_TIMEOUT):
                return await provisioner.provision_host(
                    name,
                    host_spec=f"{login}@{server.host}:{server.port}",
                    host_key=host_key,
                    identity_file=server.client_key,
                    remote_dir=str(remote_base / "app"),
                )

        result.first_s, done = _timed(lambda: anyio.run(first))
        result.first_phases = done.report.phases

        async def again() -> ProvisionResult:
            with anyio.fail_after(RUN_TIMEOUT):
                return await provisioner.provision_host(name)

        floor = _ssh_command(server.host, server.port, login, server.client_key, known_hosts_path(name))
        _rerun(result, repeat, lambda: anyio.run(again), [name], floor, console)
    return result


def bench_sandbox(work: Path, repeat: int, console: Console) -> HostResult:
    """First provision and re-runs of the sandbox host (started here, stopped at the end)."""
    work.mkdir(mode=0o700)
    with _home(work / "home"):
        name = "bench-sandbox"
        try:
            console.print("sandbox: first provision")

            async def provision() -> ProvisionResult:
                with anyio.fail_after(RUN_TIMEOUT):
                    return await provisioner.provision_sandbox(name)

            seconds, done = _timed(lambda: anyio.run(provision))
            result = HostResult("sandbox", done.profile.user, seconds, done.report.phases)
            profile = done.profile
            assert profile.host is not None and profile.identity_file is not None
            floor = _ssh_command(
                profile.host, profile.port, profile.user, profile.identity_file, known_hosts_path(name)
            )
            _rerun(result, repeat, lambda: anyio.run(provision), [name, "--sandbox"], floor, console)
        finally:
            sandbox.down()
    return result


def _median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def _table(results: list[HostResult], repeat: int) -> Table:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = Table(
        title="mcpctl provision: first install and re-runs of an up-to-date host (loopback; median)",
        caption=f"{os.cpu_count()} cores, load average {load:.1f}; "
        f"{repeat} re-runs of each kind, interleaved",
    )
    for column in ("host", "run", "time", "vs ssh true", "no-ops", "goal", "met"):
        table.add_column(column, justify="left" if column in ("host", "run", "goal") else "right")
    for r in results:
        floor = _median(r.floor)
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds, _ in r.first_phases)
        table.add_row(f"{r.host} ({r.login})", "first provision", f"{r.first_s:.1f} s", "", "", "", "")
        table.add_row("", f"  [dim]{phases}[/dim]", "", "", "", "", "")
        for label, samples, noops in (
            ("re-run, library", r.library, r.library_noops),
            ("re-run, `mcpctl provision`", r.cli, r.cli_noops),
        ):
            median = _median(samples)
            table.add_row(
                "",
                label,
                f"{median:.2f} s",
                f"{median / floor:.1f}x",
                f"{noops}/{len(samples)}",
                f"< {GOAL_S:g} s",
                "yes" if median < GOAL_S else "NO",
            )
        table.add_row("", "baseline: `ssh host true`", f"{floor:.2f} s", "1.0x", "", "", "")
    return table


def main(argv: list[str]) -> None:
    """Run the benchmark and print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench provision", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="re-runs of each kind (default 5)")
    parser.add_argument("--as-me", action="store_true", help="log in to sshd as the current user")
    parser.add_argument("--skip-sandbox", action="store_true", help="measure the sshd host only")
    parser.add_argument("--skip-sshd", action="store_true", help="measure the sandbox only")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="mcpctl-bench-provision-"))
    work.chmod(0o755)  # the bench account writes its remote directory below it
    results: list[HostResult] = []
    try:
        with _from_checkout(_freeze_checkout(work / "checkout")):
            if not args.skip_sshd:
                results.append(bench_sshd(work / "sshd-host", args.repeat, args.as_me, console))
            if not args.skip_sandbox:
                results.append(bench_sandbox(work / "sandbox-host", args.repeat, console))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Console(width=max(Console().width, 120)).print(_table(results, args.repeat))
