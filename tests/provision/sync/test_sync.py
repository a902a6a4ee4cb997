"""Real syncs over the real sshd fixture: apply, the stream and SFTP paths, failures, changing files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from provision.errors import ConnectError, RemoteError
from provision.layout import RemoteLayout
from provision.ssh import remote as remote_mod
from provision.sync import HashCache, SourceChangedError, SyncProgress, SyncSource, project_sources, sync
from provision.sync.apply import apply
from provision.sync.helper_client import remote_manifest, start_helper
from provision.sync.manifest import NS, merge
from provision.sync.plan import SyncPlan, plan
from provision.sync.scan import local_manifest
from provision.sync.stream import STREAM_MAX_FILE
from provision.sync.transfer import STREAM_READ
from tests.provision.sync.helpers import T0, passwd_bytes, sha, write, zoo_skips

BIG = STREAM_MAX_FILE * 3  # goes over SFTP
TIMEOUT = 60


def manifest_file(remote_root: Path) -> Path:
    return Path(RemoteLayout.of(str(remote_root)).manifest)


# ------------------------------------------------------------------------------- real sshd helpers


@contextlib.contextmanager
def mounted(where: Path, *args: str) -> Iterator[None]:
    """Mount something at ``where`` for the test (root only), or skip saying why."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a test filesystem needs root and mount(8)")
    done = subprocess.run(["mount", *args, str(where)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a test filesystem here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def temps_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".mcpctl-tmp-" in p.name]


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".mcpctl" not in p.relative_to(root).parts and ".mcpctl-tmp-" not in p.name
    }


@pytest.fixture
def cache(tmp_path: Path) -> HashCache:
    return HashCache(tmp_path / "hash-cache.json")


@pytest.fixture
def local(tmp_path: Path) -> Path:
    root = tmp_path / "local"
    write(root / "pkg" / "a.py", "print('a')\n")
    write(root / "pkg" / "b.py", "print('b')\n")
    write(root / "data" / "big.bin", os.urandom(BIG))
    write(root / "run.sh", "#!/bin/sh\n").chmod(0o755)
    return root


async def do_sync(sshd: Any, source: SyncSource, cache: HashCache, **kwargs: Any) -> Any:
    async with remote_mod.connect(sshd.target()) as remote:
        return await sync(remote, [source], cache=cache, **kwargs)


# -------------------------------------------------------------------------------------- real syncs


@pytest.mark.anyio
async def test_first_sync_then_noop(sshd: Any, tmp_path: Path, local: Path, cache: HashCache) -> None:
    source = SyncSource(local, str(tmp_path / "remote"))
    seen: list[SyncProgress] = []
    with anyio.fail_after(TIMEOUT):
        first = await do_sync(sshd, source, cache, progress=seen.append)
        second = await do_sync(sshd, source, cache)
    remote = tmp_path / "remote"
    assert tree(remote) == tree(local)
    assert first.files_sent == 4 and first.bytes_sent == sum(len(v) for v in tree(local).values())
    assert seen[-1] == SyncProgress(first.bytes_sent, first.bytes_sent, 4, 4)
    assert (remote / "run.sh").stat().st_mode & 0o777 == 0o755
    for rel in tree(local):
        assert (remote / rel).stat().st_mtime_ns // NS == (local / rel).stat().st_mtime_ns // NS
    assert second.up_to_date and second.files_sent == 0 and second.bytes_sent == 0
    assert "up to date" in second.describe()
    assert manifest_file(remote).is_file()
    assert temps_under(remote) == []


@pytest.mark.anyio
async def test_one_changed_file_is_the_only_upload(
    sshd: Any, tmp_path: Path, local: Path, cache: HashCache
) -> None:
    source = SyncSource(local, str(tmp_path / "remote"))
    a_py, big = local / "pkg" / "a.py", local / "data" / "big.bin"
    with anyio.fail_after(TIMEOUT):
        await do_sync(sshd, source, cache)
        # Same size, same second: only the hashes can tell (SFTP mtimes are whole seconds).
        before = a_py.stat().st_mtime_ns
        same_second = before // NS * NS + (before + 1) % NS
        write(a_py, "print('A')\n", mtime=same_second)
        assert same_second // NS == (tmp_path / "remote" / "pkg" / "a.py").stat().st_mtime_ns // NS
        os.utime(big, ns=(T0, T0))  # touched, same content: the recorded sha256 says unchanged
        run_sh = local / "run.sh"
        touched = run_sh.stat().st_mtime_ns
        touched = touched // NS * NS + (touched + 1) % NS
        os.utime(run_sh, ns=(touched, touched))  # same second, same content: hashed, unchanged
        report = await do_sync(sshd, source, HashCache(tmp_path / "other-cache.json"))
        again = await do_sync(sshd, source, cache)
    assert [u.path for p in report.plans for u in p.uploads] == ["pkg/a.py"]
    assert report.files_sent == 1
    assert (tmp_path / "remote" / "pkg" / "a.py").read_text() == "print('A')\n"
    assert again.up_to_date


@pytest.mark.anyio
async def test_delete_removes_remote_only_files_only_when_asked(
    sshd: Any, tmp_path: Path, local: Path, cache: HashCache
) -> None:
    remote = tmp_path / "remote"
    source = SyncSource(local, str(remote))
    with anyio.fail_after(TIMEOUT):
        await do_sync(sshd, source, cache)
        (local / "pkg" / "b.py").unlink()
        write(remote / ".venv" / "bin" / "python", "keep me")
        write(remote / "pkg" / "__pycache__" / "b.cpython-311.pyc", "keep me")
        kept = await do_sync(sshd, source, cache)
        assert (remote / "pkg" / "b.py").exists() and kept.deleted == 0
        dry = await do_sync(sshd, source, cache, delete=True, dry_run=True)
        assert dry.plans[0].deletes == ("pkg/b.py",) and (remote / "pkg" / "b.py").exists()
        gone = await do_sync(sshd, source, cache, delete=True)
    assert gone.deleted == 1 and not (remote / "pkg" / "b.py").exists()
    assert (remote / ".venv" / "bin" / "python").exists()
    assert (remote / "pkg" / "__pycache__" / "b.cpython-311.pyc").exists()


@pytest.mark.anyio
async def test_odd_file_names_sync(sshd: Any, tmp_path: Path, cache: HashCache) -> None:
    local = tmp_path / "local"
    names = ["with space.txt", 'it\'s "quoted".py', "ünïcødé ✓.csv", "dir $(x)/`y` & z;.txt", "-dash.txt"]
    for name in names:
        write(local / name, name * 3)
    write(local / "big name ü'.bin", os.urandom(BIG))
    source = SyncSource(local, str(tmp_path / "remote dir 'q' ü"))
    with anyio.fail_after(TIMEOUT):
        first = await do_sync(sshd, source, cache)
        second = await do_sync(sshd, source, cache)
    assert first.files_sent == len(names) + 1
    assert tree(tmp_path / "remote dir 'q' ü") == tree(local)
    assert second.up_to_date


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["sftp", "stream"])
async def test_cancelled_sync_keeps_old_versions_and_next_sync_completes(
    sshd: Any, tmp_path: Path, local: Path, cache: HashCache, how: str
) -> None:
    remote_root = tmp_path / "remote"
    source = SyncSource(local, str(remote_root))
    # sftp: one 4 MiB file (16 pipelined blocks); stream: 40 small files (16 stream chunks).
    changed = ["data/big.bin"] if how == "sftp" else [f"many/f{i}.bin" for i in range(40)]
    size = (4 << 20) if how == "sftp" else STREAM_MAX_FILE * 2 // 5
    for rel in changed:
        write(local / rel, os.urandom(size))
    with anyio.fail_after(TIMEOUT):
        await do_sync(sshd, source, cache)
        old = tree(remote_root)
        for rel in changed:
            write(local / rel, os.urandom(size))
        async with remote_mod.connect(sshd.target()) as remote:
            wanted = merge([local_manifest(source, cache=cache)])
            the_plan = plan(wanted, await remote_manifest(remote, str(remote_root)), delete=False)
            assert sorted(u.path for u in the_plan.uploads) == sorted(changed)
            task: asyncio.Task[Any] | None = None
            cancelled_at: list[SyncProgress] = []

            def cancel_after_first_bytes(step: SyncProgress) -> None:
                if not cancelled_at and step.bytes_done > 0:
                    cancelled_at.append(step)
                    assert task is not None
                    task.cancel()

            task = asyncio.ensure_future(apply(remote, the_plan, progress=cancel_after_first_bytes))
            with pytest.raises(asyncio.CancelledError):
                await task
        assert cancelled_at and cancelled_at[0].bytes_done < the_plan.bytes_to_send
        after = tree(remote_root)
        assert set(after) == set(old)
        for rel, data in after.items():
            assert data in (old[rel], (local / rel).read_bytes()), rel  # whole old or whole new
        if how == "sftp":
            assert after == old
            assert temps_under(remote_root) == []  # apply removed its temp file when cancelled
        report = await do_sync(sshd, source, cache)
    assert report.files_sent >= 1
    assert tree(remote_root) == tree(local)
    assert temps_under(remote_root) == []


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["sftp", "stream"])
async def test_dropped_connection_leaves_old_files_and_next_sync_cleans_temps(
    sshd_factory: Any, tmp_path: Path, local: Path, cache: HashCache, how: str
) -> None:
    server = sshd_factory()  # private: the drop kills every session of this server
    remote_root = tmp_path / "remote"
    source = SyncSource(local, str(remote_root))
    changed = ["data/big.bin"] if how == "sftp" else [f"many/f{i}.bin" for i in range(40)]
    size = (4 << 20) if how == "sftp" else STREAM_MAX_FILE * 2 // 5
    for rel in changed:
        write(local / rel, os.urandom(size))
    with anyio.fail_after(TIMEOUT):
        await do_sync(server, source, cache)
        old = tree(remote_root)
        for rel in changed:
            write(local / rel, os.urandom(size))
        dropped: list[int] = []

        def drop(step: SyncProgress) -> None:
            if not dropped and step.bytes_done > 0:
                dropped.append(server.kill_session_processes())

        with pytest.raises(ConnectError, match="dropped"):
            await do_sync(server, source, cache, progress=drop)
        assert dropped and dropped[0] > 0
        after = tree(remote_root)
        assert set(after) == set(old)
        for rel, data in after.items():
            assert data in (old[rel], (local / rel).read_bytes()), rel  # whole old or whole new
        if how == "sftp":
            assert after == old
            assert temps_under(remote_root / "data") != []  # the killed server could not clean up
        report = await do_sync(server, source, cache)
    assert report.files_sent >= 1
    assert tree(remote_root) == tree(local)
    assert temps_under(remote_root) == []


@pytest.mark.anyio
async def test_remote_dir_under_a_file_is_a_clear_error(
    sshd: Any, tmp_path: Path, local: Path, cache: HashCache
) -> None:
    write(tmp_path / "plain-file", "x")
    source = SyncSource(local, str(tmp_path / "plain-file" / "app"))
    with (
        anyio.fail_after(TIMEOUT),
        pytest.raises(
            RemoteError, match=r"plain-file/app on .* cannot be made a directory \(Not a directory\)"
        ),
    ):
        await do_sync(sshd, source, cache)


@pytest.mark.anyio
async def test_read_only_remote_dir_is_a_clear_error_and_keeps_files(
    sshd: Any, tmp_path: Path, local: Path, cache: HashCache
) -> None:
    remote_root = tmp_path / "remote"
    source = SyncSource(local, str(remote_root))
    with anyio.fail_after(TIMEOUT):
        await do_sync(sshd, source, cache)
        before = tree(remote_root)
        write(local / "pkg" / "a.py", "changed\n")
        with mounted(remote_root, "--bind", str(remote_root)), mounted(remote_root, "-o", "remount,bind,ro"):
            with pytest.raises(RemoteError, match=r"cannot write .*Read-only file system.*writable"):
                await do_sync(sshd, source, cache)
            assert tree(remote_root) == before


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["sftp", "stream"])
async def test_full_remote_disk_is_a_clear_error_and_keeps_files(
    sshd: Any, tmp_path: Path, cache: HashCache, how: str
) -> None:
    local = tmp_path / "local"
    remote_root = tmp_path / "remote"
    write(local / "keep.txt", "keep")
    if how == "sftp":
        write(local / "big.bin", os.urandom(BIG))
    else:
        for i in range(4):
            write(local / f"small{i}.bin", os.urandom(STREAM_MAX_FILE // 2))
    source = SyncSource(local, str(remote_root))
    with mounted(remote_root, "-t", "tmpfs", "-o", "size=1m", "tmpfs"), anyio.fail_after(TIMEOUT):
        await do_sync(sshd, source, cache)
        before = tree(remote_root)
        if how == "sftp":
            write(local / "big.bin", os.urandom(2 << 20))  # does not fit in 1 MiB
        else:
            for i in range(4):
                write(local / f"small{i}.bin", os.urandom(STREAM_MAX_FILE))
        with pytest.raises(RemoteError, match="remote disk is full"):
            await do_sync(sshd, source, cache)
        after = tree(remote_root)
        assert set(after) == set(before)
        for rel, data in after.items():
            assert data in (before[rel], (local / rel).read_bytes()), rel  # old or new, never partial
        if how == "sftp":
            assert after["big.bin"] == before["big.bin"]
        assert temps_under(remote_root) == []


@pytest.mark.anyio
async def test_dry_run_changes_nothing(sshd: Any, tmp_path: Path, local: Path, cache: HashCache) -> None:
    remote_root = tmp_path / "remote"
    with anyio.fail_after(TIMEOUT):
        report = await do_sync(sshd, SyncSource(local, str(remote_root)), cache, dry_run=True)
    assert not remote_root.exists()
    assert isinstance(report.plans[0], SyncPlan) and len(report.plans[0].uploads) == 4
    assert report.results == () and not report.changed
    assert "4 to send" in report.describe()


@pytest.mark.anyio
async def test_sync_as_a_user_whose_rc_files_print_junk(sshd: Any, local: Path, cache: HashCache) -> None:
    target = sshd.noisy_target()  # skips unless root
    home = Path(tempfile.mkdtemp(prefix="mcpctl-sync-noisy-"))
    try:
        shutil.chown(home, user=target.user)
        remote_root = home / "app"
        source = SyncSource(local, str(remote_root))
        with anyio.fail_after(TIMEOUT):
            async with remote_mod.connect(target) as remote:
                first = await sync(remote, [source], cache=cache)
                second = await sync(remote, [source], cache=cache)
        assert first.files_sent == 4 and tree(remote_root) == tree(local)
        assert second.up_to_date
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.anyio
async def test_project_sync_places_code_and_data_and_deletes_dropped_data(
    sshd: Any, tmp_path: Path, cache: HashCache
) -> None:
    project = tmp_path / "project"
    for rel in [
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "mcp_sales/server.py",
        "data/sample.csv",
        "docs/x.md",
    ]:
        write(project / rel, rel)
    sales, old = (
        write(tmp_path / "mine" / "sales.csv", "a,b\n1,2\n"),
        write(tmp_path / "mine" / "old.csv", "x"),
    )
    remote_root = tmp_path / "remote"
    with anyio.fail_after(TIMEOUT):
        async with remote_mod.connect(sshd.target()) as remote:
            first = await sync(remote, project_sources(project, [sales, old], str(remote_root)), cache=cache)
            write(remote_root / ".mcp_sales_cache" / "table.parquet", "cache")
            again = await sync(
                remote, project_sources(project, [sales], str(remote_root)), delete=True, cache=cache
            )
    assert first.files_sent == 7
    assert set(tree(remote_root)) == {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "mcp_sales/server.py",
        "data/sample.csv",
        "data/sales.csv",
        ".mcp_sales_cache/table.parquet",
    }
    assert (remote_root / "data" / "sales.csv").read_bytes() == sales.read_bytes()
    assert again.deleted == 1 and again.files_sent == 0


# ------------------------------------------------------------------ files that change while they upload


def recorded(remote_root: Path) -> dict[str, list[Any]]:
    """The host's manifest file: path -> [size, mtime_s, sha256, mode, origin_mtime_ns]."""
    files: dict[str, list[Any]] = json.loads(manifest_file(remote_root).read_text())["files"]
    return files


class Saboteur:
    """A read hook that changes ``target`` right after a chunk of it is read for sending.

    ``rewrite``: new random content one byte longer; ``truncate``: cut to a third; ``disguise``: new
    random content of the same size with the mtime put back (only a content hash can tell). ``times``
    bounds the number of changes (None: after every chunk read, so a retry is changed too).
    """

    def __init__(self, target: Path, how: str, times: int | None) -> None:
        self.target, self.how, self.times = target, how, times
        self.changes: list[int] = []  # bytes read when each change was made

    def __call__(self, path: Path, nbytes: int) -> None:
        if path != self.target or (self.times is not None and len(self.changes) >= self.times):
            return
        st = self.target.stat()
        if self.how == "rewrite":
            self.target.write_bytes(os.urandom(st.st_size + 1))
        elif self.how == "truncate":
            os.truncate(self.target, st.st_size // 3)
        else:
            self.target.write_bytes(os.urandom(st.st_size))
            os.utime(self.target, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.changes.append(nbytes)


def victim_of(local: Path, path: str) -> tuple[Path, int]:
    """The file a test changes mid-upload: large (SFTP) or small but several read chunks (stream)."""
    if path == "sftp":
        return local / "data" / "big.bin", BIG
    return local / "data" / "small.bin", STREAM_READ * 3 + 100


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["sftp", "stream"])
@pytest.mark.parametrize("how", ["rewrite", "truncate"])
async def test_a_file_that_keeps_changing_while_it_uploads_fails_loudly_and_keeps_its_old_copy(
    sshd: Any, tmp_path: Path, local: Path, cache: HashCache, path: str, how: str
) -> None:
    remote_root = tmp_path / "remote"
    source = SyncSource(local, str(remote_root))
    victim, size = victim_of(local, path)
    rel = victim.relative_to(local).as_posix()
    write(victim, os.urandom(size))
    with anyio.fail_after(TIMEOUT):
        await do_sync(sshd, source, cache)
        old = tree(remote_root)
        write(victim, os.urandom(size))  # the new version, changed again while it is sent
        write(local / "pkg" / "a.py", "print('new a')\n")  # other files get through
        other = write(local / "data" / "other.bin", os.urandom(BIG))
        saboteur = Saboteur(victim, how, times=None)
        with pytest.raises(SourceChangedError) as caught:
            await do_sync(sshd, source, cache, after_read=saboteur)
    assert caught.value.message == f"{victim} changed while it was being sent; nothing was replaced for it"
    assert caught.value.hint == "run `mcpctl sync` again when it is no longer being written"
    assert caught.value.paths == (victim,) and caught.value.exit_code != 0
    assert len(saboteur.changes) >= 2  # the first try and the retry were both changed under the reader
    after = tree(remote_root)
    assert after[rel] == old[rel]  # the old copy, byte for byte
    assert after["pkg/a.py"] == b"print('new a')\n" and after["data/other.bin"] == other.read_bytes()
    assert temps_under(remote_root) == []
    files = recorded(remote_root)
    assert rel not in files  # the manifest does not claim the file it could not send
    assert files["pkg/a.py"][2] == sha(b"print('new a')\n")
    assert files["data/other.bin"][2] == sha(other.read_bytes())
    report = caught.value.report
    assert report is not None and report.files_sent == 2 and [u.path for u in report.unsettled] == [rel]
    with anyio.fail_after(TIMEOUT):
        again = await do_sync(sshd, source, cache)  # left alone now: it goes through
    assert again.files_sent == 1 and tree(remote_root) == tree(local)


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["sftp", "stream"])
@pytest.mark.parametrize("how", ["rewrite", "truncate", "disguise"])
async def test_a_file_changed_once_while_it_uploads_is_sent_again_as_it_is_now(
    sshd: Any, tmp_path: Path, local: Path, cache: HashCache, path: str, how: str
) -> None:
    remote_root = tmp_path / "remote"
    source = SyncSource(local, str(remote_root))
    victim, size = victim_of(local, path)
    rel = victim.relative_to(local).as_posix()
    write(victim, os.urandom(size))
    with anyio.fail_after(TIMEOUT):
        await do_sync(sshd, source, cache)
        # Same size, new mtime: the plan hashes it ("content"), so a disguised change is caught too.
        write(victim, os.urandom(size))
        saboteur = Saboteur(victim, how, times=1)
        report = await do_sync(sshd, source, cache, after_read=saboteur)
        again = await do_sync(sshd, source, cache)
    assert [u.reason for p in report.plans for u in p.uploads] == ["content"]
    assert len(saboteur.changes) == 1 and saboteur.changes[0] < size  # changed after the first chunk
    final = victim.read_bytes()
    assert tree(remote_root)[rel] == final  # the new content, whole
    assert report.files_sent == 1 and report.bytes_sent == len(final) and report.unsettled == ()
    assert recorded(remote_root)[rel][0] == len(final) and recorded(remote_root)[rel][2] == sha(final)
    assert temps_under(remote_root) == []
    assert again.up_to_date


@pytest.mark.anyio
async def test_the_host_helper_refuses_bytes_that_do_not_hash_to_what_was_sent(
    sshd: Any, tmp_path: Path
) -> None:
    remote_root = tmp_path / "remote"
    write(remote_root / "keep.txt", "old")
    root = str(remote_root)

    def file_request(name: str, data: bytes, claimed: bytes) -> dict[str, Any]:
        return {"op": "file", "root": root, "p": name, "s": len(data), "m": 0, "x": 0o644, "h": sha(claimed)}

    with anyio.fail_after(TIMEOUT):
        async with remote_mod.connect(sshd.target()) as remote, start_helper(remote) as helper:
            good = helper.frame(file_request("fresh.txt", b"new", b"new"), b"new")
            assert await helper.write(good + helper.frame({"op": "barrier"}))
            assert await helper.reply(root) == 1
            bad = helper.frame(file_request("keep.txt", b"abd", b"abc"), b"abd")
            assert await helper.write(bad + helper.frame({"op": "barrier"}))
            with pytest.raises(
                RemoteError, match=r"keep\.txt .*the bytes received differ from the bytes sent"
            ):
                await helper.reply(root)
    assert (remote_root / "fresh.txt").read_bytes() == b"new"
    assert (remote_root / "keep.txt").read_bytes() == b"old"
    assert temps_under(remote_root) == []


# ------------------------------------------------------------------------ links and special files


@pytest.mark.anyio
async def test_sync_skips_links_out_of_the_tree_and_special_files_and_says_so(
    sshd: Any, tmp_path: Path, zoo: Path, cache: HashCache
) -> None:
    remote_root = tmp_path / "remote"
    source = SyncSource(zoo, str(remote_root))
    passwd = passwd_bytes()
    with anyio.fail_after(TIMEOUT):
        dry = await do_sync(sshd, source, cache, dry_run=True)
        report = await do_sync(sshd, source, cache)
        sent = tree(remote_root)
        followed = await do_sync(sshd, replace(source, follow_links=True), cache)
    for shown in (dry.describe(), report.describe()):
        for skip in zoo_skips():
            assert f"  ! {skip.path} (skipped: {skip.reason})" in shown.splitlines()
    assert f", {len(zoo_skips())} skipped" in report.describe().splitlines()[0]
    assert sent == {".mcpignore": b"*.env\n", "pkg/mod.py": b"mod", "pkg/alias.py": b"mod"}
    assert not (remote_root / "pkg" / "alias.py").is_symlink()
    assert followed.files_sent == 2
    assert tree(remote_root) == {**sent, "passwd": passwd, "pkg/secret": b"outside"}
