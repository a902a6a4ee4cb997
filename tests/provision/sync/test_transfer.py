"""Reading a local file for sending, checked against its plan (no host involved)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision.errors import McpctlError
from provision.sync.plan import SyncPlan, Upload
from provision.sync.report import ReadHook, SyncProgress
from provision.sync.transfer import STREAM_READ, Tracker, Unsettled, read_local, read_settled, replanned
from tests.provision.sync.helpers import sha, write


def planned(path: Path, *, known_sha: bool = False) -> Upload:
    st = path.stat()
    digest = sha(path.read_bytes()) if known_sha else None
    return Upload("f.bin", st.st_size, "new", path, st.st_mtime_ns, 0o644, digest)


def tracker(hook: ReadHook | None = None) -> Tracker:
    return Tracker(SyncPlan("/srv/app"), None, hook)


def test_a_file_as_planned_is_read_whole_with_its_hash(tmp_path: Path) -> None:
    path = write(tmp_path / "f.bin", os.urandom(STREAM_READ * 2 + 5))
    reads: list[int] = []
    data, st, digest = read_local(planned(path, known_sha=True), tracker(lambda _p, n: reads.append(n)))
    assert data == path.read_bytes() and digest == sha(data) and st.st_size == len(data)
    assert reads == [STREAM_READ, STREAM_READ * 2, STREAM_READ * 2 + 5]  # the hook runs after each chunk


def test_a_file_changed_since_the_plan_or_while_read_is_unsettled(tmp_path: Path) -> None:
    path = write(tmp_path / "f.bin", b"x" * (STREAM_READ * 2))
    upload = planned(path)
    write(path, b"y" * (STREAM_READ * 2 + 1))  # grew after the plan
    with pytest.raises(Unsettled):
        read_local(upload, tracker())

    upload = planned(path, known_sha=True)

    def same_size_rewrite(_path: Path, nbytes: int) -> None:
        if nbytes == STREAM_READ:
            with path.open("r+b") as handle:
                handle.seek(STREAM_READ + 1)
                handle.write(b"z")
            os.utime(path, ns=(upload.mtime_ns, upload.mtime_ns))  # disguised: only the hash can tell

    with pytest.raises(Unsettled):
        read_local(upload, tracker(same_size_rewrite))


def test_a_file_changed_once_is_read_again_as_it_is_now_and_one_that_keeps_changing_is_given_up(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "f.bin", b"a" * 100)
    upload = planned(path)
    write(path, b"b" * 120)
    data_entry = read_settled(upload, tracker())
    assert data_entry is not None
    data, entry = data_entry
    assert data == b"b" * 120 and entry.size == 120 and entry.sha256 == sha(data)
    assert entry.origin_mtime_ns == path.stat().st_mtime_ns

    def keep_growing(_path: Path, _nbytes: int) -> None:
        with path.open("ab") as handle:
            handle.write(b"+")

    assert read_settled(planned(path), tracker(keep_growing)) is None


def test_a_file_gone_before_it_is_read_again_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "f.bin", b"a")
    upload = planned(path)
    path.unlink()
    with pytest.raises(McpctlError) as caught:
        replanned(upload)
    assert caught.value.message.startswith(f"cannot read {path} (") and caught.value.hint == "run it again"


def test_the_tracker_reports_bytes_and_files_against_the_plan(tmp_path: Path) -> None:
    path = write(tmp_path / "f.bin", b"abc")
    plan = SyncPlan("/srv/app", uploads=(planned(path),))
    seen: list[SyncProgress] = []
    progress = Tracker(plan, seen.append, None)
    progress.add(2)
    progress.add(1, 1)
    assert seen == [SyncProgress(2, 3, 0, 1), SyncProgress(3, 3, 1, 1)]
