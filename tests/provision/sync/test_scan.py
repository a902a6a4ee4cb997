"""The local walk: which files a source sends, which it skips and why, and how it reads them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provision.errors import McpctlError
from provision.sync.hashing import HashCache
from provision.sync.manifest import SKIP_OUTSIDE, Skipped
from provision.sync.scan import local_manifest
from provision.sync.sources import SyncSource
from tests.provision.sync.helpers import passwd_bytes, sha, write, zoo_skips


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


def test_a_missing_root_or_an_unreadable_ignore_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(McpctlError) as caught:
        local_manifest(SyncSource(tmp_path / "nowhere", "/srv/app"))
    assert caught.value.message == f"the local directory {tmp_path / 'nowhere'} does not exist"
    assert caught.value.hint == "check the path you sync from"
    write(tmp_path / "tree" / ".mcpignore", b"\xff\xfe not utf-8")
    with pytest.raises(McpctlError) as caught:
        local_manifest(SyncSource(tmp_path / "tree", "/srv/app"))
    assert caught.value.message.startswith(f"cannot read {tmp_path / 'tree' / '.mcpignore'} (")
    assert caught.value.hint == "fix or delete that file"


def test_include_patterns_prune_the_walk_and_send_only_what_they_name(tmp_path: Path) -> None:
    for rel in ["pkg/a.py", "pkg/sub/b.py", "other/c.py", "top.txt", "notes.md"]:
        write(tmp_path / rel, rel)
    manifest = local_manifest(SyncSource(tmp_path, "/srv/app", include=("/pkg/", "/top.txt")))
    assert set(manifest.files) == {"pkg/a.py", "pkg/sub/b.py", "top.txt"}


def test_without_hashing_only_cached_hashes_are_known(tmp_path: Path) -> None:
    a = write(tmp_path / "tree" / "a.txt", "a")
    write(tmp_path / "tree" / "b.txt", "b")
    cache = HashCache()
    st = a.stat()
    cache.put(a, st.st_size, st.st_mtime_ns, "known")
    manifest = local_manifest(SyncSource(tmp_path / "tree", "/srv/app"), cache=cache, hash_files=False)
    assert manifest.files["a.txt"].sha256 == "known" and manifest.files["b.txt"].sha256 is None
