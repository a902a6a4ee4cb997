"""bootstrap: the probe's parser and the host checks as data, then the real probe and the bootstrap
sequence over the real OpenSSH sshd fixture, including the account whose rc files print junk.

The full install (uv into a private venv, ``uv sync --frozen``) is exercised end to end, once, in
``test_provisioner.py``. Here the environment is a stand-in: a stamp that says it is current and an
executable ``.venv/bin/python`` that answers the self-check. That keeps these tests to a second or two
while every command bootstrap sends still goes through a real login shell on a real host.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from provision.errors import RemoteError
from provision.host import bootstrap
from provision.host.bootstrap import (
    MIN_FREE_MB,
    HostFacts,
    check_facts,
    lock_fingerprint,
    parse_probe,
)
from provision.layout import RemoteLayout
from provision.ssh.remote import Remote, connect
from provision.sync import HashCache, SyncSource, sync
from tests.packaging.dependency_sets import pyproject

if TYPE_CHECKING:
    from tests.conftest import SshdServer

REPO = Path(__file__).resolve().parents[3]
BOUND = 60.0  # seconds: an upper bound on any single remote step, never an expectation
MARKER = "__mcpctl_probe__"

GOOD_PROBE = f"""{MARKER}
os=Linux
arch=x86_64
distro=Ubuntu 22.04.4 LTS
python=/usr/bin/python3
python_version=3.10.12
has_venv=1
free_kb=20971520
writable=1
"""

GOOD = HostFacts(
    os="Linux",
    arch="x86_64",
    distro="Ubuntu 22.04.4 LTS",
    python="/usr/bin/python3",
    python_version=(3, 10, 12),
    has_venv=True,
    free_mb=20480,
    writable=True,
)


# ----------------------------------------------------------------------------------- parse_probe


def test_parse_probe_reads_every_fact() -> None:
    assert parse_probe(GOOD_PROBE) == GOOD


def test_parse_probe_ignores_rc_file_noise_before_the_marker() -> None:
    noise = (
        "Welcome to host-1!\nos=SunOS\npython=/opt/evil/python3\nwritable=0\n"
        '{"jsonrpc": "2.0"}\nno trailing newline'
    )
    assert parse_probe(noise + GOOD_PROBE) == GOOD


def test_parse_probe_takes_nothing_from_the_noise_even_what_the_probe_left_out() -> None:
    noise = "distro=Evil OS 1.0\nhas_venv=1\nfree_kb=99999999\n"
    probe = "\n".join(
        line for line in GOOD_PROBE.splitlines() if not line.startswith(("distro=", "has_venv=", "free_kb="))
    )
    facts = parse_probe(noise + probe)
    assert facts.distro == "unknown"
    assert facts.has_venv is False
    assert facts.free_mb == -1


def test_parse_probe_without_the_marker_is_a_remote_error() -> None:
    with pytest.raises(RemoteError, match="/bin/sh"):
        parse_probe("os=Linux\npython=/usr/bin/python3\n")


def test_parse_probe_host_without_python() -> None:
    text = f"{MARKER}\nos=Linux\narch=aarch64\npython=\nfree_kb=1048576\nwritable=1\n"
    facts = parse_probe(text)
    assert facts.python == ""
    assert facts.python_version == ()
    assert facts.has_venv is False
    assert facts.arch == "aarch64"
    assert facts.distro == "unknown"  # no /etc/os-release
    assert facts.free_mb == 1024


def test_parse_probe_old_python_and_no_venv() -> None:
    text = GOOD_PROBE.replace("python_version=3.10.12", "python_version=3.8.10").replace(
        "has_venv=1", "has_venv=0"
    )
    facts = parse_probe(text)
    assert facts.python_version == (3, 8, 10)
    assert facts.has_venv is False


def test_parse_probe_unknown_free_space_is_minus_one() -> None:
    facts = parse_probe(GOOD_PROBE.replace("free_kb=20971520", "free_kb="))
    assert facts.free_mb == -1
    check_facts(facts, "/srv/app")  # unknown space is not a refusal: df may be missing


# ------------------------------------------------------------------------------------ check_facts


def test_check_facts_accepts_a_good_host() -> None:
    check_facts(GOOD, "/srv/app")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"os": "Darwin"}, "runs Darwin, not Linux"),
        ({"python": "", "python_version": ()}, "has no python3; install Python 3.10+"),
        ({"python_version": (3, 8, 10)}, "python3 is 3.8.10, older than 3.10"),
        ({"python_version": ()}, "python3 is unknown, older than 3.10"),
        ({"has_venv": False}, "no venv/ensurepip module; install it there"),
        ({"writable": False}, "/srv/app cannot be created by this user"),
        ({"free_mb": MIN_FREE_MB - 1}, f"only {MIN_FREE_MB - 1} MB free on the disk holding /srv/app"),
    ],
    ids=["not-linux", "no-python", "python-3.8", "python-version-unknown", "no-venv", "not-writable", "disk"],
)
def test_check_facts_refuses_with_what_to_do(change: dict[str, Any], expected: str) -> None:
    facts = dataclasses.replace(GOOD, **change)
    with pytest.raises(RemoteError) as caught:
        check_facts(facts, "/srv/app")
    assert expected in str(caught.value)
    assert caught.value.exit_code == 5
    assert caught.value.hint and not str(caught.value).endswith(".")  # what to do, in the one style


def test_check_facts_accepts_exactly_the_minimum_free_space() -> None:
    check_facts(dataclasses.replace(GOOD, free_mb=MIN_FREE_MB), "/srv/app")


# ------------------------------------------------------------------------------- lock_fingerprint


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "uv.lock").write_text('version = 1\n[[package]]\nname = "pandas"\nversion = "2.2.0"\n')
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mcpctl"\ndependencies = ["pandas"]\n')
    return tmp_path


def test_lock_fingerprint_is_stable_and_ignores_the_python_patch_level(project: Path) -> None:
    first = lock_fingerprint(project, (3, 11, 2))
    assert first == lock_fingerprint(project, (3, 11, 2))
    assert first == lock_fingerprint(project, (3, 11, 9))
    assert len(first) == 16 and int(first, 16) >= 0


@pytest.mark.parametrize("name", ["uv.lock", "pyproject.toml"])
def test_lock_fingerprint_changes_with_the_lock_and_pyproject(project: Path, name: str) -> None:
    before = lock_fingerprint(project, (3, 11, 2))
    with (project / name).open("a") as handle:
        handle.write("# changed\n")
    assert lock_fingerprint(project, (3, 11, 2)) != before


def test_lock_fingerprint_changes_with_the_python_minor(project: Path) -> None:
    assert lock_fingerprint(project, (3, 11, 2)) != lock_fingerprint(project, (3, 12, 0))


# ------------------------------------------------------------------------------- over the real sshd


def _account(sshd: SshdServer, which: str) -> Any:
    return sshd.target() if which == "main" else sshd.noisy_target()


def _cheapest(sshd: SshdServer) -> Any:
    """The noisy account when there is one: it proves the noise harmless, and its rc files are cheap,
    unlike some root ~/.bashrc files that take a second per command."""
    return sshd.noisy_target() if sshd.noisy_user else sshd.target()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory under the system temp dir that every account can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mcpctl-bootstrap-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _home_for(shared: Path, user: str) -> Path:
    """A new directory under ``shared`` that ``user`` owns (as root: handed over to that account)."""
    path = shared / f"home-{user}"
    path.mkdir(mode=0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["main", "noisy"])
async def test_probe_over_ssh_sees_this_machine(sshd: SshdServer, shared_dir: Path, which: str) -> None:
    target = _account(sshd, which)
    home = _home_for(shared_dir, target.user)
    remote_dir = str(home / "not" / "yet" / "there")
    with anyio.fail_after(BOUND):
        async with connect(target) as remote:
            facts = await bootstrap.probe(remote, remote_dir)
    assert facts.os == "Linux"
    assert facts.arch == platform.machine()
    assert facts.python.startswith("/") and facts.python.endswith("python3")
    assert facts.python_version >= (3, 10) and len(facts.python_version) == 3
    assert facts.has_venv is True
    assert facts.writable is True
    assert facts.free_mb > 0
    check_facts(facts, remote_dir)
    for value in (facts.os, facts.arch, facts.distro, facts.python):
        assert sshd.noise not in value
    assert not await anyio.Path(remote_dir).exists()  # the probe only looks


@pytest.mark.anyio
async def test_probe_finds_a_directory_the_login_user_cannot_create(
    sshd: SshdServer, shared_dir: Path
) -> None:
    target = sshd.noisy_target()  # skips unless root: root may write anywhere
    locked = shared_dir / "root-only"
    locked.mkdir(mode=0o755)  # owned by root: the noisy account may read but not write
    remote_dir = str(locked / "app")
    with anyio.fail_after(BOUND):
        async with connect(target) as remote:
            facts = await bootstrap.probe(remote, remote_dir)
    assert facts.writable is False
    with pytest.raises(RemoteError, match=f"{remote_dir} cannot be created by this user"):
        check_facts(facts, remote_dir)


@pytest.mark.anyio
async def test_probe_and_sync_through_noisy_rc_files(
    sshd: SshdServer, shared_dir: Path, mcpctl_home: Path
) -> None:
    target = sshd.noisy_target()  # skips unless root
    home = _home_for(shared_dir, target.user)
    local = shared_dir / "local"
    (local / "pkg").mkdir(parents=True)
    (local / "pkg" / "mod.py").write_text("print('hello')\n")
    (local / "run.sh").write_text("#!/bin/sh\necho run\n")
    (local / "run.sh").chmod(0o755)
    (local / "big.bin").write_bytes(os.urandom(600_000))  # over SFTP, not in the helper's stream
    remote_dir = str(home / "app")
    cache = HashCache(mcpctl_home / "hashes.json")
    with anyio.fail_after(BOUND):
        async with connect(target) as remote:
            facts = await bootstrap.probe(remote, remote_dir)
            check_facts(facts, remote_dir)
            first = await sync(remote, [SyncSource(local, remote_dir)], cache=cache, python=facts.python)
            again = await sync(remote, [SyncSource(local, remote_dir)], cache=cache, python=facts.python)
    assert first.files_sent == 3 and first.changed
    assert again.up_to_date and not again.changed and again.files_sent == 0
    for rel in ("pkg/mod.py", "run.sh", "big.bin"):
        sent = Path(remote_dir) / rel
        assert sent.read_bytes() == (local / rel).read_bytes()
        assert sent.stat().st_uid == pwd.getpwnam(target.user).pw_uid
    assert stat.S_IMODE((Path(remote_dir) / "run.sh").stat().st_mode) == 0o755
    assert sshd.noise not in (Path(remote_dir) / "pkg" / "mod.py").read_text()


# ------------------------------------------------- the bootstrap sequence, with a stand-in environment

STANDIN_PYTHON = """#!/bin/sh
# Stands in for the venv's python: answers `python -m mcp_sales check ...` the way the real one does.
if [ -f "$0.fail" ]; then
  echo "ok   python   stand-in"
  echo "checking the data..." >&2
  echo "data: column 'UNITS_SOLD' is missing from sales.csv" >&2
  exit 1
fi
echo "ok   standin  argv: $*"
"""


async def _standin_environment(remote: Remote, remote_dir: str, project: Path) -> None:
    """Install the stand-in: the venv's python and a stamp that matches this checkout's lock."""
    facts = await bootstrap.probe(remote, remote_dir)
    layout = RemoteLayout.of(remote_dir)
    stamp = {"fingerprint": lock_fingerprint(project, facts.python_version), "uv": "x", "python": "x"}
    await remote.run(["mkdir", "-p", str(layout.python.parent), str(layout.state)])
    await remote.run(
        ["/bin/sh", "-c", 'cat > "$1" && chmod 755 "$1"', "w", str(layout.python)], input=STANDIN_PYTHON
    )
    await remote.run(["/bin/sh", "-c", 'cat > "$1"', "w", str(layout.stamp)], input=json.dumps(stamp) + "\n")


@pytest.mark.anyio
async def test_bootstrap_of_a_current_environment_syncs_checks_and_says_up_to_date(
    sshd: SshdServer, shared_dir: Path, mcpctl_home: Path
) -> None:
    target = _cheapest(sshd)
    home = _home_for(shared_dir, target.user)
    remote_dir = str(home / "app")
    local = shared_dir / "code"
    local.mkdir()
    (local / "server.py").write_text("VERSION = 1\n")
    cache = HashCache(mcpctl_home / "hashes.json")
    phases: list[tuple[str, str]] = []

    async def run_bootstrap(remote: Remote) -> bootstrap.BootstrapReport:
        async def sync_code() -> bool:
            report = await sync(remote, [SyncSource(local, remote_dir)], cache=cache)
            return report.changed

        return await bootstrap.bootstrap(
            remote,
            remote_dir=remote_dir,
            project_root=REPO,
            server_args=["--data", f"{remote_dir}/data/my sales.csv", "--column", "operation=CITY"],
            sync_code=sync_code,
            on_phase=lambda phase, detail: phases.append((phase, detail)),
        )

    with anyio.fail_after(BOUND):
        async with connect(target) as remote:
            await _standin_environment(remote, remote_dir, REPO)
            first = await run_bootstrap(remote)
            first_phases, phases[:] = list(phases), []
            second = await run_bootstrap(remote)
            second_phases, phases[:] = list(phases), []
            (local / "server.py").write_text("VERSION = 2\n")
            third = await run_bootstrap(remote)

    # 1. files were sent: the environment is current, so it is not touched, but the server is checked.
    assert [p for p, _ in first_phases] == ["probe", "sync", "environment", "check"]
    assert dict(first_phases)["sync"].startswith("files updated")
    assert dict(first_phases)["environment"].startswith("up to date")
    assert first.changed and not first.up_to_date
    assert first.facts is not None and first.facts.os == "Linux"
    # The server's arguments arrive intact (one argument with a space in it), and nothing else does.
    args = f"-m mcp_sales check --data {remote_dir}/data/my sales.csv --column operation=CITY"
    expected = f"ok   standin  argv: {args}"
    assert first.check_output.strip() == expected
    # 2. nothing changed: no check, and the report says so.
    assert [p for p, _ in second_phases] == ["probe", "sync", "environment"]
    assert dict(second_phases)["sync"].startswith("up to date")
    assert second.up_to_date and second.check_output == ""
    assert [name for name, _, _ in second.phases] == ["probe", "sync", "environment"]
    # 3. a code change is sent and checked again.
    assert third.changed and third.check_output.strip() == expected
    assert (Path(remote_dir) / "server.py").read_text() == "VERSION = 2\n"


@pytest.mark.anyio
async def test_a_failing_self_check_is_a_remote_error_with_its_last_line(
    sshd: SshdServer, shared_dir: Path
) -> None:
    target = _cheapest(sshd)
    remote_dir = str(_home_for(shared_dir, target.user) / "app")

    async def files_changed() -> bool:
        return True  # as if a sync had sent new data: the server must be checked

    with anyio.fail_after(BOUND):
        async with connect(target) as remote:
            await _standin_environment(remote, remote_dir, REPO)
            await remote.run(["touch", f"{RemoteLayout.of(remote_dir).python}.fail"])
            with pytest.raises(RemoteError) as caught:
                await bootstrap.bootstrap(
                    remote, remote_dir=remote_dir, project_root=REPO, server_args=[], sync_code=files_changed
                )
    message = str(caught.value)
    assert "self-check failed" in message
    assert "column 'UNITS_SOLD' is missing from sales.csv" in message
    assert "checking the data" not in message  # the last line says what is wrong, not the chatter
    assert "mcpctl provision" in message  # what to do next


def test_the_host_installs_exactly_the_server_group_of_the_lock() -> None:
    argv = bootstrap.install_argv(RemoteLayout.of("/srv/app"), "/usr/bin/python3")
    sync = argv[argv.index("/srv/app/.mcpctl/tools/bin/uv") :]
    uv = "/srv/app/.mcpctl/tools/bin/uv"
    assert sync == [uv, "sync", "--frozen", "--only-group", "server", "--project", "/srv/app"]
    assert "UV_PROJECT_ENVIRONMENT=/srv/app/.venv" in argv and "UV_PYTHON=/usr/bin/python3" in argv
    assert bootstrap.SERVER_GROUP in pyproject()["dependency-groups"]
