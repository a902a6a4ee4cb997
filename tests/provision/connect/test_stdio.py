"""The client's side of the proxy: its stdin read as lines, its stdout kept for JSON-RPC."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from provision.connect.stdio import LocalPeer
from tests.provision.connect.helpers import (
    BOUND,
)


@pytest.fixture
def regular_files(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """A regular file with three lines as stdin and an empty one as stdout (not pipes)."""
    (tmp_path / "in").write_bytes(b'{"n":1}\n' * 3)
    with (tmp_path / "in").open("rb") as stdin, (tmp_path / "out").open("wb") as stdout:
        yield stdin.fileno(), stdout.fileno(), tmp_path / "out"


@pytest.mark.anyio
async def test_the_local_side_also_works_on_descriptors_asyncio_cannot_watch(
    regular_files: tuple[int, int, Path],
) -> None:
    # Regular files (and Windows pipes) are read by a thread and written with blocking writes.
    stdin, stdout, written = regular_files
    peer = LocalPeer(stdin, stdout)
    await peer.open()
    data = b""
    with anyio.fail_after(BOUND):
        while chunk := await peer.read():
            data += chunk
    await peer.write(b"a line")
    peer.close()
    assert data == b'{"n":1}\n' * 3
    assert written.read_bytes() == b"a line\n"


# What an MCP client could leave the proxy on; uvloop aborts the process on the non-pipes if offered them.
_ON_UVLOOP = """
import asyncio, sys, uvloop
from provision.connect.stdio import LocalPeer

async def main():
    with open(sys.argv[1], "rb") as stdin, open(sys.argv[2], "wb") as stdout:
        peer = LocalPeer(stdin.fileno(), stdout.fileno())
        await peer.open()
        data = await asyncio.wait_for(peer.read(), 30)
        await peer.write(b"answer")
        peer.close()
    print(data.decode(), file=sys.stderr)

uvloop.run(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
def test_on_uvloop_stdin_and_stdout_may_be_files_or_dev_null(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.write_bytes(b'{"n":1}\n')
    for stdin, stdout in ((source, tmp_path / "out"), (Path(os.devnull), Path(os.devnull))):
        done = subprocess.run(
            [sys.executable, "-c", _ON_UVLOOP, str(stdin), str(stdout)],
            capture_output=True,
            timeout=BOUND,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.decode() == ('{"n":1}\n\n' if stdin == source else "\n")
    assert (tmp_path / "out").read_bytes() == b"answer\n"


# ------------------------------------------------------------------------- real client, real server


@pytest.mark.anyio
async def test_lines_are_cut_blank_ones_skipped_long_ones_dropped_and_the_last_one_kept(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in"
    source.write_bytes(b'{"a":1}\r\n\n   \n' + b"x" * 50 + b'\n{"b":2}\n{"unfinished":3}')
    with source.open("rb") as stdin, (tmp_path / "out").open("wb") as stdout:
        peer = LocalPeer(stdin.fileno(), stdout.fileno())
        await peer.open()
        with anyio.fail_after(BOUND):
            lines = [line async for line in peer.lines(max_line=20)]
        peer.close()
    assert lines == [b'{"a":1}', b'{"b":2}', b'{"unfinished":3}']


def test_claim_stdout_leaves_fd_1_to_stderr_and_the_wire_to_the_caller(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from provision.connect.stdio import claim_stdout\n"
        "wire = claim_stdout()\n"
        "print('a stray print')\n"
        "sys.stdout.flush()\n"
        "os.write(1, b'to fd 1\\n')\n"
        'os.write(wire, b\'{"jsonrpc": "2.0"}\\n\')\n'
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=BOUND, check=True)
    assert done.stdout == b'{"jsonrpc": "2.0"}\n'
    assert b"a stray print" in done.stderr and b"to fd 1" in done.stderr
