"""`mcpctl sync` on a project holding symlinks and special files, and on a file that keeps changing.

Commands run in-process through Typer's ``CliRunner`` against the real sshd fixture, with
``MCPCTL_HOME`` pointing at a fresh directory and the project root pointing at a small project made
here (so the links are ours, not the checkout's). Human output goes to stderr, ``--json`` to stdout.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner, Result

import provision.sync as sync_mod  # where provisioner looks up sync(), so a test can wrap it
from provision.cli import app
from provision.host import provisioner
from provision.layout import RemoteLayout
from provision.profiles import Profile, known_hosts_path, save_profile
from provision.ssh.hostkeys import pin_host_key
from provision.sync.manifest import (
    SKIP_DANGLING,
    SKIP_DIRECTORY_LINK,
    SKIP_FIFO,
    SKIP_IGNORED_TARGET,
    SKIP_OUTSIDE,
    SKIP_SOCKET,
)

if TYPE_CHECKING:
    from tests.conftest import SshdServer

PASSWD = Path("/etc/passwd")
# What the project below skips, relative to the remote directory.
SKIPS = {
    "mcp_sales/passwd": SKIP_OUTSIDE,
    "mcp_sales/secret.py": SKIP_OUTSIDE,
    "mcp_sales/config.py": SKIP_IGNORED_TARGET,
    "data/more": SKIP_DIRECTORY_LINK,
    "data/dangling.csv": SKIP_DANGLING,
    "data/fifo.csv": SKIP_FIFO,
    "data/sock": SKIP_SOCKET,
}


def run(*args: str) -> Result:
    """``mcpctl ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    """Output with every run of whitespace made one space (rich wraps lines to the terminal width)."""
    return " ".join(text.split())


def remote_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".mcpctl" not in p.relative_to(root).parts
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small project (the code tree `mcpctl sync` sends) with links and special files in it."""
    root = tmp_path / "project"
    (root / "mcp_sales").mkdir(parents=True)
    (root / "data").mkdir()
    for rel, text in {
        "pyproject.toml": "[project]\nname = 'x'\n",
        "uv.lock": "lock",
        "mcp_sales/server.py": "print('server')\n",
        "mcp_sales/local.env": "TOKEN=1\n",
        ".mcpignore": "*.env\n",
    }.items():
        (root / rel).write_text(text)
    (tmp_path / "secret").write_text("outside the project\n")
    for rel, target in {
        "mcp_sales/passwd": str(PASSWD),
        "mcp_sales/secret.py": "../../secret",
        "mcp_sales/alias.py": "server.py",  # inside: sent as a regular file
        "mcp_sales/config.py": "local.env",  # inside, but .mcpignore keeps it back
        "data/more": "../mcp_sales",
        "data/dangling.csv": "nowhere.csv",
    }.items():
        os.symlink(target, root / rel)
    os.mkfifo(root / "data" / "fifo.csv")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "data" / "sock"))
    monkeypatch.setattr(provisioner, "project_root", lambda: root)
    return root


@pytest.fixture
def sales_link(tmp_path: Path) -> Path:
    """The data file named in the profile: a symlink to a file elsewhere (followed: it was named)."""
    real = tmp_path / "exports" / "2024-sales.csv"
    real.parent.mkdir()
    real.write_text("OPERATION_NAME,PRODUCT_ID\nDallas,P-1\n")
    link = tmp_path / "sales.csv"
    os.symlink(real, link)
    return link


def host_profile(sshd: SshdServer, name: str, remote_dir: Path, data: list[Path]) -> None:
    """Save a profile for the sshd fixture's host with its key pinned, as `provision` leaves it."""
    save_profile(
        Profile(
            name=name,
            host=sshd.host,
            port=sshd.port,
            user=sshd.user,
            identity_file=sshd.client_key,
            remote_dir=str(remote_dir),
            data=data,
        )
    )
    pin_host_key(known_hosts_path(name), sshd.host, sshd.port, sshd.host_key_line)


def test_sync_lists_what_it_skips_and_follow_links_sends_links_out_of_the_project(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path, project: Path, sales_link: Path
) -> None:
    remote_dir = tmp_path / "remote" / "app"
    host_profile(sshd, "links", remote_dir, [sales_link])

    dry = run("sync", "links", "--dry-run")
    assert dry.exit_code == 0, dry.output
    text = flat(dry.stderr)
    assert f"{len(SKIPS)} skipped" in text
    for path, reason in SKIPS.items():
        assert f"! {path} (skipped: {reason})" in text
    assert "+ mcp_sales/alias.py (new, " in text and "+ data/sales.csv (new, " in text
    assert not remote_dir.exists()

    synced = run("sync", "links")
    assert synced.exit_code == 0, synced.output
    text = flat(synced.stderr)
    assert text.startswith("sent 5 files (") and f", {len(SKIPS)} skipped, in " in text
    for path, reason in SKIPS.items():
        assert f"! {path} (skipped: {reason})" in text
    assert remote_tree(remote_dir) == {
        "pyproject.toml": (project / "pyproject.toml").read_bytes(),
        "uv.lock": b"lock",
        "mcp_sales/server.py": b"print('server')\n",
        "mcp_sales/alias.py": b"print('server')\n",
        "data/sales.csv": sales_link.read_bytes(),
    }
    assert not any(p.is_symlink() for p in remote_dir.rglob("*"))

    as_json = run("sync", "links", "--dry-run", "--json")
    assert as_json.exit_code == 0
    report = json.loads(as_json.stdout)
    assert {s["path"]: s["reason"] for s in report["skipped"]} == SKIPS
    assert report["up_to_date"] is True and report["changed_while_sending"] == []

    followed = run("sync", "links", "--follow-links")
    assert followed.exit_code == 0, followed.output
    assert flat(followed.stderr).startswith("sent 2 files (")
    assert (remote_dir / "mcp_sales" / "passwd").read_bytes() == PASSWD.read_bytes()
    assert (remote_dir / "mcp_sales" / "secret.py").read_bytes() == b"outside the project\n"
    assert not (remote_dir / "mcp_sales" / "config.py").exists()  # .mcpignore still wins
    assert not (remote_dir / "data" / "more").exists()  # directory links are never followed


def test_sync_of_a_file_that_keeps_changing_names_it_and_exits_non_zero(
    mcpctl_home: Path,
    sshd: SshdServer,
    tmp_path: Path,
    project: Path,
    sales_link: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote_dir = tmp_path / "remote" / "app"
    host_profile(sshd, "busy", remote_dir, [sales_link])
    assert run("sync", "busy").exit_code == 0
    old = remote_tree(remote_dir)
    real = sales_link.resolve()
    real.write_text("OPERATION_NAME,PRODUCT_ID\nDallas,P-1\nAustin,P-2\n")
    (project / "mcp_sales" / "server.py").write_text("print('server 2')\n")
    rewrites: list[int] = []

    def keep_writing(path: Path, nbytes: int) -> None:
        """An export still being written: every read of it sees it grow."""
        if path == sales_link:
            with real.open("a") as handle:
                handle.write("Boston,P-3\n")
            rewrites.append(nbytes)

    plain_sync = sync_mod.sync
    monkeypatch.setattr(sync_mod, "sync", functools.partial(plain_sync, after_read=keep_writing))
    result = run("sync", "busy")
    assert result.exit_code == 1, result.output
    assert len(rewrites) >= 2  # read as planned, then once more as it was: growing both times
    text = flat(result.stderr)
    assert text.startswith("sent 2 files (")  # server.py and its alias; then the error line
    assert f"error: {sales_link} changed while it was being sent; nothing was replaced for it" in text
    assert text.endswith("run `mcpctl sync` again when it is no longer being written")
    after = remote_tree(remote_dir)
    assert after["data/sales.csv"] == old["data/sales.csv"]
    assert after["mcp_sales/server.py"] == b"print('server 2')\n"
    assert after["mcp_sales/alias.py"] == b"print('server 2')\n"
    assert not [p for p in remote_dir.rglob("*") if ".mcpctl-tmp-" in p.name]
    record = Path(RemoteLayout.of(str(remote_dir)).manifest)
    recorded: dict[str, Any] = json.loads(record.read_text())["files"]
    assert "data/sales.csv" not in recorded and "mcp_sales/server.py" in recorded

    as_json = run("sync", "busy", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["changed_while_sending"] == [str(sales_link)]

    monkeypatch.setattr(sync_mod, "sync", plain_sync)  # the export is finished
    settled = run("sync", "busy")
    assert settled.exit_code == 0, settled.output
    assert (remote_dir / "data" / "sales.csv").read_bytes() == real.read_bytes()
    assert stat.S_ISREG((remote_dir / "data" / "sales.csv").lstat().st_mode)


def test_dry_run_json_lists_what_would_be_sent_and_deleted(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path, project: Path, sales_link: Path
) -> None:
    remote_dir = tmp_path / "remote" / "app"
    host_profile(sshd, "plan", remote_dir, [sales_link])
    assert run("sync", "plan").exit_code == 0
    (project / "mcp_sales" / "new.py").write_text("print('new')\n")
    (remote_dir / "mcp_sales" / "gone.py").write_text("old\n")

    as_json = run("sync", "plan", "--dry-run", "--delete", "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["dry_run"] is True and report["up_to_date"] is False
    [code] = [p for p in report["plans"] if p["remote_root"] == str(remote_dir)]
    assert code["send"] == [{"path": "mcp_sales/new.py", "reason": "new", "size": 13}]
    assert code["delete"] == ["mcp_sales/gone.py"]
    assert not (remote_dir / "mcp_sales" / "new.py").exists()
    assert (remote_dir / "mcp_sales" / "gone.py").exists()


def test_a_directory_on_the_host_in_the_way_of_a_file_is_named_as_such(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path, project: Path, sales_link: Path
) -> None:
    remote_dir = tmp_path / "remote" / "app"
    host_profile(sshd, "inway", remote_dir, [sales_link])
    assert run("sync", "inway").exit_code == 0
    (project / "mcp_sales" / "server.py").write_text("print('server 2')\n")
    in_the_way = remote_dir / "mcp_sales" / "server.py"
    in_the_way.unlink()
    in_the_way.mkdir()
    (in_the_way / "inner").write_text("someone else's\n")

    result = run("sync", "inway")
    assert result.exit_code != 0
    text = flat(result.stderr)
    assert f"{in_the_way} on {sshd.host}:{sshd.port} is a directory where the sync puts a file" in text
    assert "move that directory away on the host, then sync again" in text
    assert "make it writable" not in text
    assert (in_the_way / "inner").read_text() == "someone else's\n"


def test_a_file_on_the_host_in_the_way_of_a_directory_is_named_as_such(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path, project: Path, sales_link: Path
) -> None:
    remote_dir = tmp_path / "remote" / "app"
    host_profile(sshd, "fileway", remote_dir, [sales_link])
    assert run("sync", "fileway").exit_code == 0
    (project / "mcp_sales" / "sub").mkdir()
    (project / "mcp_sales" / "sub" / "mod.py").write_text("x = 1\n")
    in_the_way = remote_dir / "mcp_sales" / "sub"
    in_the_way.write_text("someone else's\n")

    result = run("sync", "fileway")
    assert result.exit_code != 0
    text = flat(result.stderr)
    assert f"{in_the_way} on {sshd.host}:{sshd.port} cannot be made a directory (File exists)" in text
    assert "move that file away on the host or set another remote_dir in the profile" in text
    assert in_the_way.read_text() == "someone else's\n"
