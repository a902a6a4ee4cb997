"""After a sync or provision that changed code, the host's warm server is replaced at once.

Which syncs count (code, not data) is a value test; the replacement itself runs the launcher's
``--restart`` over a real SSH connection on this checkout (remote_dir = the repository).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_sales.warm import attach
from provision.host.warm import code_changed, replace_warm_server
from provision.ssh.remote import connect
from provision.sync.plan import SyncPlan, Upload
from provision.sync.report import SyncReport
from tests.conftest import SshdServer
from tests.mcp_sales.warm.helpers import REPO, daemon_pid, wait_ready


def report(remote_root: str, uploads: tuple[str, ...] = (), deletes: tuple[str, ...] = ()) -> SyncReport:
    sent = tuple(Upload(path, 1, "new", Path("/x") / path, 0, 0o644) for path in uploads)
    return SyncReport((SyncPlan(remote_root, uploads=sent, deletes=deletes),), (), False, 0.0)


@pytest.mark.parametrize(
    ("uploads", "deletes", "changed"),
    [
        (("data/sales.csv",), (), False),
        (("data/mcp_sales.toml",), ("data/old.csv",), False),
        ((), (), False),
        (("mcp_sales/server.py",), (), True),
        (("data/sales.csv", "uv.lock"), (), True),
        ((), ("mcp_sales/old_module.py",), True),
        (("database.csv",), (), True),  # a name that merely starts like the data directory's
    ],
)
def test_only_a_change_outside_the_data_directory_replaces_the_warm_server(
    uploads: tuple[str, ...], deletes: tuple[str, ...], changed: bool
) -> None:
    assert code_changed(report("/srv/app", uploads, deletes), "/srv/app") is changed


def test_a_data_plan_of_its_own_root_is_data() -> None:
    assert not code_changed(report("/srv/app/data", ("sales.csv",)), "/srv/app")
    assert code_changed(report("/srv/app/data", ("../mcp_sales/x.py",)), "/srv/app")


@pytest.mark.anyio
async def test_the_warm_server_is_replaced_over_ssh(sshd: SshdServer) -> None:
    directory = Path(attach.runtime_dir(str(REPO)))
    async with connect(sshd.target()) as remote:
        attach.ask("stop", str(directory))
        assert await replace_warm_server(remote, str(REPO)) == "none ran (the next session starts one)"
        attach.spawn_daemon(str(directory), str(REPO))
        wait_ready(directory)
        first = daemon_pid(directory)
        assert await replace_warm_server(remote, str(REPO)) == "replaced: a fresh warm server is starting"
        wait_ready(directory)
        assert daemon_pid(directory) != first


@pytest.mark.anyio
async def test_a_host_without_the_launcher_is_reported_not_failed(sshd: SshdServer, tmp_path: Path) -> None:
    async with connect(sshd.target()) as remote:
        detail = await replace_warm_server(remote, str(tmp_path / "nothing-here"))
    assert detail.startswith("not replaced")
