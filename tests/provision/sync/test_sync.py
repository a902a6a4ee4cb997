"""sync: the pure plan as data, local/remote manifests, and real syncs over the real sshd fixture."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from provision.errors import ConnectError, McpctlError, RemoteError
from provision.ssh import remote as remote_mod
from provision.sync.manifest import (
    MANIFEST_PATH,
    NS,
    SKIP_DANGLING,
    SKIP_DEVICE,
    SKIP_DIRECTORY_LINK,
    SKIP_FIFO,
    SKIP_IGNORED_TARGET,
    SKIP_OUTSIDE,
    SKIP_SOCKET,
    SKIP_SPECIAL_TARGET,
    FileEntry,
    HashCache,
    Manifest,
    Scope,
    Skipped,
    SyncSource,
    literal_pattern,
    local_manifest,
    manifest_from_listing,
    merge,
    project_sources,
    temp_name,
)
from provision.sync.upload import (
    STREAM_MAX_FILE,
    STREAM_READ,
    SourceChangedError,
    SyncPlan,
    SyncProgress,
    Upload,
    apply,
    is_safe_path,
    plan,
    remote_manifest,
    sync,
)

LOCAL = Path("/src")
ROOT = "/srv/app"
T0 = 1_700_000_000 * NS
EVERYTHING = (Scope("", ("*",), ("__pycache__/", "*.pyc", ".venv/")),)
BIG = STREAM_MAX_FILE * 3  # goes over SFTP
TIMEOUT = 60


def entry(
    size: int = 10, mtime_ns: int = T0, sha: str | None = None, mode: int = 0o644, path: str = ""
) -> FileEntry:
    return FileEntry(size, mtime_ns, sha, mode, LOCAL / path if path else None)


def local_of(files: dict[str, FileEntry], scopes: tuple[Scope, ...] = EVERYTHING) -> Manifest:
    return Manifest(
        ROOT,
        {p: FileEntry(e.size, e.mtime_ns, e.sha256, e.mode, LOCAL / p) for p, e in files.items()},
        scopes,
    )


def remote_of(files: dict[str, FileEntry], temps: tuple[str, ...] = ()) -> Manifest:
    return Manifest(ROOT, files, temps=temps)


# ------------------------------------------------------------------------------------ plan (pure)


def test_plan_sorts_files_into_new_changed_and_unchanged() -> None:
    local = local_of(
        {
            "new.py": entry(),
            "grown.py": entry(size=11),
            "same_sha.py": entry(mtime_ns=T0 + 5 * NS, sha="a"),
            "other_sha.py": entry(sha="b"),
            "touched.py": entry(mtime_ns=T0 + 5 * NS),
            "quick_same.py": entry(),
            "chmod.sh": entry(mode=0o755),
        }
    )
    remote = remote_of(
        {
            "grown.py": entry(),
            "same_sha.py": entry(sha="a"),
            "other_sha.py": entry(sha="c"),
            "touched.py": entry(),
            "quick_same.py": entry(),
            "chmod.sh": entry(),
        }
    )
    result = plan(local, remote, delete=False)
    assert {(u.path, u.reason) for u in result.uploads} == {
        ("new.py", "new"),
        ("grown.py", "size"),
        ("other_sha.py", "content"),
        ("touched.py", "mtime"),
        ("chmod.sh", "mode"),
    }
    assert set(result.unchanged) == {"same_sha.py", "quick_same.py"}
    assert result.bytes_to_send == 10 * 4 + 11
    assert not result.up_to_date
    new = next(u for u in result.uploads if u.path == "new.py")
    assert new == Upload("new.py", 10, "new", LOCAL / "new.py", T0, 0o644, None)


def test_plan_trusts_the_recorded_origin_mtime_to_the_nanosecond() -> None:
    # The host's copy was sent from the local file at mtime T0 + 5 (its own mtime is whole seconds).
    remote = remote_of(
        {"a": FileEntry(10, T0, "s", 0o644, None, T0 + 5), "b": FileEntry(10, T0, "s", 0o644, None, T0 + 5)}
    )
    local = local_of({"a": entry(mtime_ns=T0 + 5), "b": entry(mtime_ns=T0 + 6)})
    result = plan(local, remote, delete=False)
    assert [(u.path, u.reason) for u in result.uploads] == [("b", "mtime")]
    assert result.unchanged == ("a",)


def test_plan_compares_mtimes_at_second_granularity() -> None:
    # SFTP sets whole seconds: the remote copy of a file with mtime x.999999999 has mtime x.
    local = local_of({"a": entry(mtime_ns=T0 + NS - 1), "b": entry(mtime_ns=T0 + NS)})
    remote = remote_of({"a": entry(mtime_ns=T0), "b": entry(mtime_ns=T0)})
    result = plan(local, remote, delete=False)
    assert [u.path for u in result.uploads] == ["b"]
    assert result.unchanged == ("a",)


def test_plan_deletes_only_when_asked() -> None:
    local = local_of({"keep.py": entry()})
    remote = remote_of({"keep.py": entry(), "gone.py": entry()})
    assert plan(local, remote, delete=False).deletes == ()
    assert plan(local, remote, delete=False).up_to_date
    assert plan(local, remote, delete=True).deletes == ("gone.py",)


def test_plan_never_deletes_outside_the_root_or_what_it_does_not_manage() -> None:
    scopes = (
        Scope("", ("/pkg/",), ("__pycache__/", "*.pyc", "/pkg/local.cfg")),
        Scope("data", ("/x.csv",), ()),
    )
    local = local_of({"pkg/a.py": entry()}, scopes)
    remote_only = [
        "../etc/passwd",
        "/etc/passwd",
        "pkg/../../etc/passwd",
        "pkg//b.py",
        "./pkg/b.py",
        ".venv/lib/pkg/x.py",
        "pkg/.venv/x.py",
        ".mcp_sales_cache/pkg/x",
        ".mcpctl/manifest.json",
        "notes.txt",  # not in any include
        "pkg/__pycache__/a.cpython-311.pyc",
        "pkg/b.pyc",
        "pkg/local.cfg",  # ignored by the source
        "data/y.csv",  # the data source only manages x.csv
    ]
    remote = remote_of(
        {
            "pkg/a.py": entry(),
            "pkg/old.py": entry(),
            "data/x.csv": entry(),
            **{p: entry() for p in remote_only},
        }
    )
    result = plan(local, remote, delete=True)
    assert result.deletes == ("data/x.csv", "pkg/old.py")


def test_plan_cleans_stale_temp_files_and_is_comparable_printable_data() -> None:
    local = local_of({"a.py": entry(sha="s")})
    stale = f"pkg/{temp_name('b.py', '0123456789ab')}"
    remote = remote_of({"a.py": entry(sha="s")}, temps=(stale, "../evil"))
    first = plan(local, remote, delete=False)
    assert first == plan(local, remote, delete=False)
    assert first.cleanup == (stale,)
    assert not first.up_to_date
    assert "1 stale temp files to remove" in first.describe()
    up = plan(local, remote_of({"a.py": entry(sha="s")}), delete=False)
    assert up.up_to_date
    assert str(up) == f"{ROOT}: up to date (1 files)"
    grown = plan(local_of({"a.py": entry(size=2000)}), remote, delete=False)
    assert "~ a.py (size, 2.0 kB)" in grown.describe()


def test_plan_marks_the_record_stale_when_it_learns_a_hash() -> None:
    local = local_of({"a.py": entry(sha="s")})
    result = plan(local, remote_of({"a.py": entry()}), delete=False)
    assert result.up_to_date and result.record_stale
    assert result.record == {"a.py": FileEntry(10, T0, "s", 0o644, None, T0)}
    recorded = Manifest(
        ROOT, {"a.py": entry(sha="s")}, recorded={"a.py": FileEntry(10, T0, "s", 0o644, None, T0)}
    )
    assert not plan(local, recorded, delete=False).record_stale


def test_plan_rejects_mismatched_roots_and_unsafe_local_paths() -> None:
    with pytest.raises(ValueError, match="cannot compare"):
        plan(local_of({}), Manifest("/elsewhere", {}), delete=False)
    with pytest.raises(ValueError, match="safe relative path"):
        plan(local_of({"../x": entry()}), remote_of({}), delete=False)
    assert is_safe_path("a/b c/d'e")
    assert not any(is_safe_path(p) for p in ["", "/a", "a/../b", "a//b", "a/", ".", "a/./b"])


# --------------------------------------------------------------------------------- manifests (local)


def write(path: Path, data: bytes | str, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


def test_local_manifest_honours_builtin_ignores_and_mcpignore(tmp_path: Path) -> None:
    for rel in [
        "pkg/mod.py",
        "pkg/sub/deep.py",
        "keep.txt",
        ".git/config",
        ".venv/bin/python",
        "pkg/__pycache__/mod.cpython-311.pyc",
        "stray.pyc",
        ".mcp_sales_cache/t.parquet",
        ".mypy_cache/x.json",
        "secret.env",
        "build/out.bin",
        "pkg/build/kept.py",
        f".{'x'}.mcpctl-tmp-0123456789ab",
    ]:
        write(tmp_path / rel, rel)
    write(tmp_path / ".mcpignore", "# comment\n*.env\n/build/\n")
    manifest = local_manifest(SyncSource(tmp_path, "/srv/app"))
    assert set(manifest.files) == {
        ".mcpignore",
        "pkg/mod.py",
        "pkg/sub/deep.py",
        "keep.txt",
        "pkg/build/kept.py",
    }
    mod = manifest.files["pkg/mod.py"]
    assert mod.size == len("pkg/mod.py") and mod.local_path == tmp_path / "pkg/mod.py"
    assert mod.sha256 == hashlib.sha256(b"pkg/mod.py").hexdigest()
    assert manifest.manages("pkg/other.py") and not manifest.manages("secret2.env")
    assert not manifest.manages("build/x") and not manifest.manages(".venv/x")


def test_project_sources_send_the_code_tree_and_data_files(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for rel in [
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "mcp_sales/server.py",
        "provision/sync/upload.py",
        "data/sample.csv",
        "tests/test_x.py",
        "docs/guide.md",
        "bench/sync.py",
    ]:
        write(project / rel, rel)
    elsewhere = write(tmp_path / "my data" / "sales [2024]!.csv", "a,b\n")
    folder = tmp_path / "extra"
    write(folder / "x.csv", "1")
    sources = project_sources(project, [elsewhere, folder], "/srv/app")
    manifest = merge([local_manifest(s) for s in sources])
    assert manifest.root == "/srv/app"
    assert set(manifest.files) == {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "mcp_sales/server.py",
        "provision/sync/upload.py",
        "data/sample.csv",
        "data/sales [2024]!.csv",
        "data/extra/x.csv",
    }
    assert manifest.files["data/sales [2024]!.csv"].local_path == elsewhere
    # --delete may remove stale code and data files, never what sync does not manage.
    assert manifest.manages("mcp_sales/old.py") and manifest.manages("data/old.csv")
    assert not manifest.manages("tests/test_x.py") and not manifest.manages("notes.txt")
    with pytest.raises(McpctlError, match="does not exist"):
        project_sources(project, [tmp_path / "missing.csv"], "/srv/app")
    with pytest.raises(McpctlError, match="not the mcpctl project"):
        project_sources(tmp_path, [], "/srv/app")


def test_merge_refuses_two_local_files_for_one_remote_path(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "sales.csv", "1")
    b = write(tmp_path / "b" / "sales.csv", "2")
    sources = [SyncSource(p.parent, "/srv/app/data", include=(literal_pattern(p.name),)) for p in (a, b)]
    with pytest.raises(McpctlError, match="both be sent"):
        merge([local_manifest(s) for s in sources])


def test_hash_cache_is_keyed_by_size_and_mtime(tmp_path: Path) -> None:
    path = write(tmp_path / "tree" / "big.bin", b"x" * 1000, mtime=T0)
    cache_file = tmp_path / "cache.json"
    cache = HashCache(cache_file)
    # A planted hash proves the file is not read again while size and mtime are unchanged.
    cache.put(path, 1000, T0, "planted")
    cache.save()
    source = SyncSource(tmp_path / "tree", "/srv/app")
    assert local_manifest(source, cache=HashCache(cache_file)).files["big.bin"].sha256 == "planted"
    write(path, b"y" * 1000, mtime=T0 + 1)
    fresh = HashCache(cache_file)
    real = local_manifest(source, cache=fresh).files["big.bin"].sha256
    assert real is not None and real != "planted" and len(real) == 64
    assert fresh.get(path, 1000, T0 + 1) == real
    assert (
        local_manifest(source, cache=HashCache(cache_file), hash_files=False).files["big.bin"].sha256 is None
    )


def test_remote_listing_trusts_recorded_hashes_only_while_size_and_mtime_match() -> None:
    listing = {
        "files": [
            ["a.py", 10, T0 + NS // 2, 0o644],
            ["b.py", 10, T0 + 9 * NS, 0o644],
            ["dir with space/é 'q'.sh", 5, T0, 0o755],
        ],
        "temps": [f"pkg/{temp_name('x.py', '0123456789ab')}"],
        "manifest": json.dumps(
            {
                "version": 1,
                "files": {"a.py": [10, T0 // NS, "sa", 0o644, 7], "b.py": [10, T0 // NS, "sb", 0o644, 8]},
            }
        ),
    }
    manifest = manifest_from_listing(ROOT, listing)
    assert manifest.files["a.py"] == FileEntry(10, T0 + NS // 2, "sa", 0o644, None, 7)
    assert manifest.files["b.py"].sha256 is None  # changed on the host since we wrote it
    assert manifest.files["dir with space/é 'q'.sh"].mode == 0o755
    assert manifest.temps == (f"pkg/{temp_name('x.py', '0123456789ab')}",)
    assert manifest_from_listing(ROOT, {"files": [], "temps": [], "manifest": None}) == Manifest(ROOT, {})
    assert manifest_from_listing(ROOT, {"files": [], "manifest": "not json"}).recorded == {}


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
    assert (remote / MANIFEST_PATH).is_file()
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
        pytest.raises(RemoteError, match=r"cannot write .*plain-file.*Not a directory"),
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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recorded(remote_root: Path) -> dict[str, list[Any]]:
    """The host's manifest file: path -> [size, mtime_s, sha256, mode, origin_mtime_ns]."""
    files: dict[str, list[Any]] = json.loads((remote_root / MANIFEST_PATH).read_text())["files"]
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
    assert str(caught.value) == (
        f"{victim} changed while it was being sent; nothing was replaced for it - run `mcpctl sync` "
        "again when it is no longer being written."
    )
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
    from provision.sync.upload import _helper  # the host side of the stream, driven directly

    remote_root = tmp_path / "remote"
    write(remote_root / "keep.txt", "old")
    root = str(remote_root)

    def file_request(name: str, data: bytes, claimed: bytes) -> dict[str, Any]:
        return {"op": "file", "root": root, "p": name, "s": len(data), "m": 0, "x": 0o644, "h": sha(claimed)}

    with anyio.fail_after(TIMEOUT):
        async with remote_mod.connect(sshd.target()) as remote, _helper(remote, "python3") as helper:
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


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    """A tree holding every kind of entry a walk can meet, and a secret just outside it."""
    root = tmp_path / "project"
    write(root / "pkg" / "mod.py", "mod")
    write(root / "secret.env", "TOKEN=1")
    write(root / ".mcpignore", "*.env\n")
    write(tmp_path / "secret", "outside")
    links = {
        "passwd": "/etc/passwd",
        "pkg/secret": "../../secret",  # leaves the tree through ..
        "pkg/alias.py": "mod.py",  # stays inside: followed
        "pkg/config.txt": "../secret.env",  # inside, but to an ignored file
        "ignored.env": "/etc/passwd",  # ignored itself: neither sent nor listed
        "pkg_link": "pkg",
        "dangling": "nowhere",
        "null": "/dev/null",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
    if os.geteuid() == 0:
        os.mknod(root / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # as /dev/null
    return root


def passwd_bytes() -> bytes:
    return Path("/etc/passwd").read_bytes()


def zoo_skips() -> set[Skipped]:
    skips = {
        Skipped("passwd", SKIP_OUTSIDE),
        Skipped("pkg/secret", SKIP_OUTSIDE),
        Skipped("pkg/config.txt", SKIP_IGNORED_TARGET),
        Skipped("pkg_link", SKIP_DIRECTORY_LINK),
        Skipped("dangling", SKIP_DANGLING),
        Skipped("null", SKIP_SPECIAL_TARGET),
        Skipped("fifo", SKIP_FIFO),
        Skipped("sock", SKIP_SOCKET),
    }
    return skips | ({Skipped("dev", SKIP_DEVICE)} if os.geteuid() == 0 else set())


def test_local_manifest_follows_links_inside_the_tree_and_lists_what_it_skips(zoo: Path) -> None:
    manifest = local_manifest(SyncSource(zoo, "/srv/app"))
    assert set(manifest.files) == {".mcpignore", "pkg/mod.py", "pkg/alias.py"}
    assert manifest.files["pkg/alias.py"].sha256 == sha(b"mod")
    assert set(manifest.skipped) == zoo_skips()
    assert [s.path for s in manifest.skipped] == sorted(s.path for s in manifest.skipped)

    followed = local_manifest(SyncSource(zoo, "/srv/app", follow_links=True))
    assert set(followed.files) == {".mcpignore", "pkg/mod.py", "pkg/alias.py", "passwd", "pkg/secret"}
    assert followed.files["pkg/secret"].sha256 == sha(b"outside")
    assert followed.files["passwd"].sha256 == sha(passwd_bytes())
    assert set(followed.skipped) == zoo_skips() - {
        Skipped("passwd", SKIP_OUTSIDE),
        Skipped("pkg/secret", SKIP_OUTSIDE),
    }


def test_a_data_file_that_is_a_link_is_followed_wherever_it_leads(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for rel in ["pyproject.toml", "mcp_sales/server.py"]:
        write(project / rel, rel)
    real = write(tmp_path / "exports" / "2024" / "sales.csv", "a,b\n1,2\n")
    named = tmp_path / "mine" / "sales.csv"
    named.parent.mkdir()
    os.symlink(real, named)
    fifo = tmp_path / "mine" / "pipe.csv"
    os.mkfifo(fifo)
    manifest = merge([local_manifest(s) for s in project_sources(project, [named], "/srv/app")])
    assert manifest.files["data/sales.csv"].sha256 == sha(b"a,b\n1,2\n") and manifest.skipped == ()
    with pytest.raises(McpctlError, match=r"pipe\.csv is neither a regular file nor a directory"):
        project_sources(project, [fifo], "/srv/app")


def test_plan_never_deletes_a_skipped_path_and_describes_the_skips() -> None:
    local = replace(
        local_of({"a.py": entry()}), skipped=(Skipped("passwd", SKIP_OUTSIDE), Skipped("fifo", SKIP_FIFO))
    )
    remote = remote_of({"a.py": entry(), "passwd": entry(), "gone.py": entry()})
    result = plan(local, remote, delete=True)
    assert result.deletes == ("gone.py",)  # passwd still exists locally, as a link that is not sent
    assert result.skipped == local.skipped
    assert result.describe().splitlines()[-2:] == [
        f"  ! passwd (skipped: {SKIP_OUTSIDE})",
        f"  ! fifo (skipped: {SKIP_FIFO})",
    ]
    quiet = plan(replace(local, files={}), remote_of({}), delete=False)
    assert quiet.describe() == "\n".join(
        [
            f"{ROOT}: up to date (0 files, 2 skipped)",
            f"  ! passwd (skipped: {SKIP_OUTSIDE})",
            f"  ! fifo (skipped: {SKIP_FIFO})",
        ]
    )


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
