"""The host helper as a program: run as on the host (``python -I -S -c SOURCE``) against tmp directories.

Each test feeds it the real protocol on stdin (framed requests, file bytes) and reads its JSON replies
and exit status, with no SSH in between: listing, atomic installs, refusals, deletes and the record.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision.sync import helper
from provision.sync.helper import EXIT_CUT, EXIT_REFUSED, frame, is_temp_name, temp_name
from provision.sync.helper_client import helper_source
from tests.provision.sync.helpers import sha, write

TIMEOUT = 30
MTIME = 1_700_000_000


def interpreters() -> list[Any]:
    """This python, and a Python 3.10 (the oldest host python supported) when one is installed."""
    found = [pytest.param(sys.executable, id="this-python")]
    candidates = [
        shutil.which("python3.10"),
        *map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3")),
    ]
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([candidate, "-c", ""], capture_output=True, check=False).returncode == 0
        ):
            found.append(pytest.param(candidate, id="python3.10"))
            break
    return found


class Run:
    """One helper process's answers: the JSON replies, in order, and its exit status."""

    def __init__(self, replies: list[Any], status: int, stderr: str) -> None:
        self.replies = replies
        self.status = status
        self.stderr = stderr

    @property
    def error(self) -> dict[str, Any]:
        assert self.status == EXIT_REFUSED, self.stderr
        last: dict[str, Any] = self.replies[-1]["error"]
        return last


def run_helper(cwd: Path, *requests: dict[str, Any] | bytes, python: str = sys.executable) -> Run:
    """Run the helper on ``requests`` (a dict is framed, bytes are sent as they are), then end its input."""
    data = b"".join(frame(r) if isinstance(r, dict) else r for r in requests)
    done = subprocess.run(
        [python, "-I", "-S", "-c", helper_source()],
        input=data,
        capture_output=True,
        cwd=cwd,
        timeout=TIMEOUT,
        check=False,
    )
    replies = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return Run(replies, done.returncode, done.stderr.decode(errors="replace"))


def file_request(
    root: Path, rel: str, data: bytes, *, mode: int = 0o644, claimed: bytes | None = None
) -> bytes:
    """A ``file`` request and the bytes that follow it (``claimed``: what the sha256 says was sent)."""
    request = {
        "op": "file",
        "root": str(root),
        "p": rel,
        "s": len(data),
        "m": MTIME,
        "x": mode,
        "h": sha(data if claimed is None else claimed),
    }
    return frame(request, data)


def temps_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temp_name(p.name)]


# ------------------------------------------------------------------------------- the module itself


def test_the_helper_is_stdlib_only_and_python_3_10_syntax() -> None:
    """It runs where provision is not installed, on the oldest host python supported."""
    source = helper_source()
    tree = ast.parse(source, feature_version=(3, 10))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported
    assert source == Path(helper.__file__).read_text(encoding="utf-8")


def test_the_wire_format_is_a_length_then_json_then_the_bytes() -> None:
    request = {"op": "file", "p": "é.txt"}
    body = json.dumps(request).encode("ascii")
    assert frame(request, b"data") == struct.pack(">I", len(body)) + body + b"data"
    assert b"\\u00e9" in body  # JSON is ASCII: names that are not UTF-8 travel as escapes too


def test_temporary_names_are_recognised_and_fit_in_name_max() -> None:
    name = temp_name("a.py", "0123456789ab")
    assert name == ".a.py.mcpctl-tmp-0123456789ab" and is_temp_name(name)
    assert not is_temp_name("a.py") and not is_temp_name(".a.py.mcpctl-tmp-0123")
    long = temp_name("é" * 200, "0123456789ab")
    assert len(long.encode()) <= 255 and is_temp_name(long)


# ------------------------------------------------------------------------------------------ listing


@pytest.mark.parametrize("python", interpreters())
def test_the_listing_names_files_temps_and_the_record_and_skips_pruned_dirs(
    tmp_path: Path, python: str
) -> None:
    root = tmp_path / "root"
    write(root / "a.py", "aaa", mtime=MTIME * 10**9)
    write(root / "pkg" / "sub" / "b.sh", "b").chmod(0o755)
    write(root / ".venv" / "bin" / "python", "not entered")
    write(root / "pkg" / temp_name("c.py", "0123456789ab"), "left over")
    write(root / ".mcpctl" / "manifest.json", '{"version": 1}')
    os.symlink("a.py", root / "link.py")
    manifest_path = str(root / ".mcpctl" / "manifest.json")
    request = {
        "op": "list",
        "root": str(root),
        "prune": [".venv", "__pycache__"],
        "manifest_path": manifest_path,
    }
    run = run_helper(tmp_path, request, python=python)
    assert run.status == 0, run.stderr
    listing = run.replies[0]["ok"]
    rows = {row[0]: row[1:] for row in listing["files"]}
    assert rows == {
        "a.py": [3, MTIME * 10**9, 0o644],
        "pkg/sub/b.sh": [1, (root / "pkg" / "sub" / "b.sh").stat().st_mtime_ns, 0o755],
        ".mcpctl/manifest.json": [14, (root / ".mcpctl" / "manifest.json").stat().st_mtime_ns, 0o644],
    }
    assert listing["temps"] == [f"pkg/{temp_name('c.py', '0123456789ab')}"]
    assert listing["manifest"] == '{"version": 1}'


def test_a_missing_root_lists_empty(tmp_path: Path) -> None:
    request = {
        "op": "list",
        "root": str(tmp_path / "none"),
        "prune": [],
        "manifest_path": str(tmp_path / "m"),
    }
    run = run_helper(tmp_path, request)
    assert run.status == 0 and run.replies == [{"ok": {"files": [], "temps": [], "manifest": None}}]


# ---------------------------------------------------------------------------------------- installs


@pytest.mark.parametrize("python", interpreters())
def test_files_are_installed_atomically_with_their_mode_and_mtime(tmp_path: Path, python: str) -> None:
    root = tmp_path / "root"
    old = write(root / "pkg" / "a.py", "old")
    old_inode = old.stat().st_ino
    stale = write(root / "pkg" / temp_name("x.py", "0123456789ab"), "stale")
    prepare = {
        "op": "prepare",
        "root": str(root),
        "dirs": ["pkg", "new/dir", ""],
        "remove": [f"pkg/{stale.name}"],
    }
    run = run_helper(
        tmp_path,
        prepare,
        file_request(root, "pkg/a.py", b"new content"),
        file_request(root, "new/dir/run.sh", b"#!/bin/sh\n", mode=0o755),
        file_request(root, "top.txt", b""),
        {"op": "barrier"},
        python=python,
    )
    assert run.status == 0, run.stderr
    assert run.replies == [{"ok": True}, {"ok": 3}]
    assert (
        old.read_bytes() == b"new content" and old.stat().st_ino != old_inode
    )  # renamed over, not rewritten
    script = root / "new" / "dir" / "run.sh"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755 and script.stat().st_mtime == MTIME
    assert (root / "top.txt").read_bytes() == b""
    assert temps_under(root) == []


def test_a_stream_cut_inside_a_file_installs_nothing_and_leaves_no_temp(tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = write(root / "a.py", "old")
    cut = file_request(root, "a.py", b"x" * 1000)[:-600]  # the client gave up after 400 bytes
    run = run_helper(tmp_path, file_request(root, "b.py", b"whole"), cut)
    assert run.status == EXIT_CUT and run.replies == []
    assert old.read_bytes() == b"old"
    assert (root / "b.py").read_bytes() == b"whole"  # the file before the cut was complete
    assert temps_under(root) == []


def test_bytes_that_do_not_hash_to_what_was_sent_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    old = write(root / "keep.txt", "old")
    run = run_helper(tmp_path, file_request(root, "keep.txt", b"abd", claimed=b"abc"), {"op": "barrier"})
    assert run.error == {
        "errno": errno.EIO,
        "strerror": "the bytes received differ from the bytes sent",
        "path": str(root / "keep.txt"),
    }
    assert old.read_bytes() == b"old" and temps_under(root) == []


@pytest.mark.parametrize("rel", ["../escape.txt", "/etc/x", "a//b", "./a", ""])
def test_a_path_that_is_not_plainly_below_the_root_is_refused(tmp_path: Path, rel: str) -> None:
    root = tmp_path / "root"
    run = run_helper(tmp_path, file_request(root, rel, b"x"))
    assert run.error["errno"] == errno.EINVAL and run.error["path"] == rel
    assert not (tmp_path / "escape.txt").exists()


def test_nothing_is_written_through_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (tmp_path / "elsewhere").mkdir()
    root.mkdir()
    os.symlink(tmp_path / "elsewhere", root / "out")
    run = run_helper(tmp_path, {"op": "prepare", "root": str(root), "dirs": ["out"], "remove": []})
    assert run.error["errno"] == errno.EXDEV and run.error["path"] == str(root / "out")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_directory_that_cannot_be_written_is_refused_with_its_errno(tmp_path: Path) -> None:
    write(tmp_path / "plain-file", "x")
    root = tmp_path / "plain-file" / "app"
    run = run_helper(tmp_path, {"op": "prepare", "root": str(root), "dirs": ["pkg"], "remove": []})
    assert run.error["errno"] == errno.ENOTDIR and run.error["path"] == str(root)


def test_a_request_that_is_not_json_ends_the_helper_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    assert run_helper(tmp_path, struct.pack(">I", 5) + b"{nope").status == EXIT_CUT
    assert run_helper(tmp_path, b"\x00\x00").status == EXIT_CUT  # input ended inside a length
    assert run_helper(tmp_path).status == 0  # no request at all: a quiet end
    run = run_helper(tmp_path, {"op": "format-disk"})
    assert run.error["errno"] == errno.EINVAL and run.error["path"] == "format-disk"


# ------------------------------------------------------------------------------ finalize and free


def test_finalize_deletes_prunes_emptied_dirs_and_writes_the_record(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "gone" / "deep" / "x.py", "x")
    write(root / "pkg" / "old.py", "old")
    write(root / "pkg" / "kept.py", "kept")
    state = root / ".mcpctl"
    write(state / temp_name("manifest.json", "0123456789ab"), "stale")
    record = {"version": 1, "files": {"pkg/kept.py": [4, MTIME, sha(b"kept"), 0o644, MTIME * 10**9]}}
    request = {
        "op": "finalize",
        "root": str(root),
        "delete": ["gone/deep/x.py", "pkg/old.py", "never/was.py"],
        "manifest": record,
        "manifest_path": str(state / "manifest.json"),
    }
    run = run_helper(tmp_path, request)
    assert run.status == 0 and run.replies == [{"ok": True}], run.stderr
    assert not (root / "gone").exists()  # emptied by the deletes: removed up to the root
    assert sorted(p.name for p in (root / "pkg").iterdir()) == ["kept.py"]
    assert json.loads((state / "manifest.json").read_text()) == record
    assert os.listdir(state) == ["manifest.json"]


def test_free_space_is_asked_of_the_nearest_existing_directory(tmp_path: Path) -> None:
    run = run_helper(tmp_path, {"op": "free", "path": str(tmp_path / "not" / "yet")})
    assert run.status == 0
    free = run.replies[0]["ok"]
    st = os.statvfs(tmp_path)
    assert isinstance(free, int) and abs(free - st.f_bavail * st.f_frsize) < 64 << 20
