"""The local hash cache: keyed by size and mtime, saved atomically, never trusted when stale."""

from __future__ import annotations

import stat
from pathlib import Path

from provision.sync.hashing import HashCache, file_sha256
from provision.sync.scan import local_manifest
from provision.sync.sources import SyncSource
from tests.provision.sync.helpers import T0, sha, write


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


def test_the_cache_is_saved_atomically_and_privately(tmp_path: Path) -> None:
    path = write(tmp_path / "tree" / "a.txt", "a")
    cache_file = tmp_path / "state" / "sync-hashes.json"
    cache = HashCache(cache_file)
    assert cache.hash(path, 1, path.stat().st_mtime_ns) == sha(b"a") == file_sha256(path)
    cache.save()
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert [p.name for p in cache_file.parent.iterdir()] == ["sync-hashes.json"]  # no temporary left
    assert HashCache(cache_file).get(path, 1, path.stat().st_mtime_ns) == sha(b"a")


def test_a_corrupt_cache_starts_empty_and_an_unwritable_one_is_ignored(tmp_path: Path) -> None:
    cache_file = write(tmp_path / "cache.json", "{not json")
    cache = HashCache(cache_file)
    assert cache.get(cache_file, 9, T0) is None
    blocked = HashCache(write(tmp_path / "file", "x") / "cache.json")  # its directory is a file
    blocked.put(cache_file, 9, T0, "s")
    blocked.save()  # a lost cache costs one re-hash, never an error
