"""``mcpctl sync`` against ``rsync -a`` over ssh, side by side, through the same local sshd.

Scenarios (each timed ``--repeat`` times, interleaved, median shown; every run includes connecting):

- a 2000-file tree (20 directories x 100 files x 4 KB): first sync, then a no-op re-sync;
- one 512 MB file: first sync (throughput).

Goals: the no-op re-sync no slower than rsync; first syncs at least 0.9x rsync's throughput.

The negotiated cipher decides the big-file row (the client encrypts in Python with asyncssh): with
``--cipher NAME`` an extra row shows mcpctl with that cipher preferred, as a proposal for remote.py's
connect options (the default run uses what remote.py negotiates today).

Both tools start exactly one command through the login user's shell per sync, so the shell's rc files
cost both the same; as root the benchmark logs in as a separate account without rc files
(``mcpctl-bench``, created if missing) so that the table measures the tools, not the login account's rc
files. ``--as-me`` logs in as the current user instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import asyncssh
from rich.console import Console
from rich.table import Table

from provision.ssh import remote as remote_module
from provision.ssh.remote import connect
from provision.ssh.target import Target
from provision.sync import HashCache, SyncSource, sync
from tests.sshd import SshdServer, ensure_quiet_user, running_sshd

_CIPHERS: set[str] = set()  # what the default runs negotiated, for the table title


def _make_tree(root: Path, dirs: int, per_dir: int, size: int) -> int:
    for d in range(dirs):
        directory = root / f"pkg{d:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            (directory / f"mod{f:03d}.py").write_bytes(os.urandom(size))
    return dirs * per_dir * size


def _make_big(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for i in range(size >> 20):
            handle.write(chunk[i % 7 :] + chunk[: i % 7])  # distinct blocks, cheap to make


def _rsync(server: SshdServer, user: str, src: Path, dst: str) -> float:
    remote_shell = shlex.join(server.ssh_command())
    started = time.perf_counter()
    subprocess.run(
        ["rsync", "-a", "-e", remote_shell, f"{src}/", f"{user}@{server.host}:{dst}/"],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


@contextlib.contextmanager
def _preferring(cipher: str | None) -> Iterator[None]:
    """Put ``cipher`` first in the connect options remote.py builds (a what-if; None: unchanged)."""
    if cipher is None:
        yield
        return
    original = remote_module._connect_options

    def options(*args: Any) -> dict[str, Any]:
        chosen = original(*args)
        others = [alg.decode("ascii") for alg in asyncssh.encryption.get_encryption_algs()]
        chosen["encryption_algs"] = [cipher, *(alg for alg in others if alg != cipher)]
        return chosen

    remote_module._connect_options = cast(Any, options)
    try:
        yield
    finally:
        remote_module._connect_options = original


def _ours(target: Target, src: Path, dst: str, cache: Path, python: str, cipher: str | None = None) -> float:
    async def run() -> None:
        async with connect(target) as remote:
            _CIPHERS.add(str(remote.conn.get_extra_info("send_cipher")))
            # Loaded and saved every run, as the CLI does.
            await sync(remote, [SyncSource(src, dst)], cache=HashCache(cache), python=python)

    started = time.perf_counter()
    with _preferring(cipher):
        asyncio.run(run())
    return time.perf_counter() - started


def _fresh_dir(base: Path, owner: str | None) -> str:
    path = Path(tempfile.mkdtemp(dir=base))
    if owner is not None:
        shutil.chown(path, user=owner)
    return str(path / "dst")


def _fresh_cache(work: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=work)) / "hashes.json"


def _show(seconds: float, size: float | None) -> str:
    if size is None:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s, {size / seconds / 1e6:.0f} MB/s"


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def main(argv: list[str]) -> None:
    """Run the benchmark and print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench sync", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (median shown)")
    parser.add_argument("--files", type=int, default=2000, help="files in the tree (100 per directory)")
    parser.add_argument("--big-mb", type=int, default=512, help="size of the big file in MB")
    parser.add_argument("--as-me", action="store_true", help="log in as the current user (with its rc files)")
    parser.add_argument("--python", default="/usr/bin/python3", help="the host's python3 for the sync helper")
    parser.add_argument(
        "--cipher",
        default="aes128-gcm@openssh.com",
        help="also time the big file with this cipher preferred ('' to skip)",
    )
    args = parser.parse_args(argv)
    if shutil.which("rsync") is None:
        raise SystemExit("rsync is not installed: it is the baseline of this benchmark")
    console = Console(stderr=True)
    user = None if args.as_me else ensure_quiet_user()
    work = Path(tempfile.mkdtemp(prefix="mcpctl-bench-sync-"))
    work.chmod(0o755)  # the bench account reads authorized_keys under it and writes its targets
    try:
        local_tree, local_big = work / "local-tree", work / "local-big"
        tree_bytes = _make_tree(local_tree, max(1, args.files // 100), min(100, args.files), 4096)
        big_bytes = args.big_mb << 20
        _make_big(local_big / "big.bin", big_bytes)
        targets = work / "targets"
        targets.mkdir(mode=0o755)
        with running_sshd(work / "sshd", other_logins=[user] if user else []) as server:
            login = user or server.user
            target = Target(server.host, server.port, login, server.known_hosts, server.client_key)
            rows: list[tuple[str, list[float], list[float], float | None]] = []
            console.print(
                f"sync bench: {args.files} files / {args.big_mb} MB as {login}, {args.repeat} runs each"
            )

            def scenario(
                name: str, ours: Callable[[], float], theirs: Callable[[], float], size: float | None
            ) -> None:
                mine: list[float] = []
                base: list[float] = []
                for _ in range(args.repeat):  # interleaved: background load hits both alike
                    mine.append(ours())
                    base.append(theirs())
                rows.append((name, mine, base, size))

            def first(src: Path) -> tuple[Callable[[], float], Callable[[], float]]:
                return (
                    lambda: _ours(target, src, _fresh_dir(targets, user), _fresh_cache(work), args.python),
                    lambda: _rsync(server, login, src, _fresh_dir(targets, user)),
                )

            scenario(f"first sync, {args.files} x 4 KB", *first(local_tree), tree_bytes)
            ours_dst, theirs_dst = _fresh_dir(targets, user), _fresh_dir(targets, user)
            cache = _fresh_cache(work)
            _ours(target, local_tree, ours_dst, cache, args.python)
            _rsync(server, login, local_tree, theirs_dst)
            scenario(
                f"no-op re-sync, {args.files} files",
                lambda: _ours(target, local_tree, ours_dst, cache, args.python),
                lambda: _rsync(server, login, local_tree, theirs_dst),
                None,
            )
            shutil.rmtree(targets)
            targets.mkdir(mode=0o755)
            scenario(f"first sync, 1 x {args.big_mb} MB", *first(local_big), big_bytes)
            default_ciphers = ", ".join(sorted(_CIPHERS))
            if args.cipher:
                scenario(
                    f"  same, {args.cipher.split('@')[0]} preferred",
                    lambda: _ours(
                        target,
                        local_big,
                        _fresh_dir(targets, user),
                        _fresh_cache(work),
                        args.python,
                        args.cipher,
                    ),
                    lambda: _rsync(server, login, local_big, _fresh_dir(targets, user)),
                    big_bytes,
                )
        table = Table(
            title=f"mcpctl sync vs rsync -a over ssh (same sshd, loopback; {args.repeat} interleaved runs)",
            caption=f"mcpctl's cipher today: {default_ciphers}; rsync: OpenSSH's default. "
            "Ratio = rsync time / mcpctl time (> 1: mcpctl faster), of the medians and of the best runs.",
        )
        for column in (
            "scenario",
            "mcpctl sync (median)",
            "rsync -a (median)",
            "ratio",
            "best-run ratio",
            "goal",
        ):
            table.add_column(column, justify="left" if column == "scenario" else "right")
        for name, mine, base, size in rows:
            ratio = _median(base) / _median(mine)
            best = min(base) / min(mine)
            goal = 1.0 if size is None else 0.9
            table.add_row(
                name,
                _show(_median(mine), size),
                _show(_median(base), size),
                f"{ratio:.2f}x {'ok' if ratio >= goal else 'MISSED'}",
                f"{best:.2f}x",
                f">= {goal:.1f}x",
            )
        Console(width=max(Console().width, 110)).print(table)
    finally:
        shutil.rmtree(work, ignore_errors=True)
