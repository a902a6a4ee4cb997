"""What differs per platform on the laptop's side, with the Windows paths forced here where they can be.

The Windows access list is checked as the command it is (icacls cannot run here); the lock file that
stands for a folder on Windows, the proxy's reader-thread path over real pipes, and the sandbox's
refusal are run for real with ``sys.platform`` reading ``win32``. ``make typecheck`` adds the static
half: every laptop module type-checked with ``mypy --platform win32`` and ``--platform darwin``.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import anyio
import pytest

from provision import portable
from provision.clients import lock
from provision.connect.stdio import LocalPeer
from provision.errors import ClientConfigError, SandboxError
from provision.files import atomic_write

BOUND = 10.0  # seconds for any one read through the proxy's stdin: an upper bound, never an expectation
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")


# ------------------------------------------------------------------------------------ private files


@posix_only
def test_make_private_leaves_a_file_0600_and_a_folder_0700(tmp_path: Path) -> None:
    file, folder = tmp_path / "f", tmp_path / "d"
    file.write_text("x")
    file.chmod(0o644)
    folder.mkdir(mode=0o755)
    portable.make_private(file)
    portable.make_private(folder, directory=True)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@posix_only
def test_atomic_write_makes_a_private_file_unless_told_a_mode(tmp_path: Path) -> None:
    atomic_write(tmp_path / "profile.toml", b"name = 'x'\n")
    atomic_write(tmp_path / "claude.json", b"{}", mode=0o644)
    assert stat.S_IMODE((tmp_path / "profile.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "claude.json").stat().st_mode) == 0o644


def test_the_windows_access_list_names_the_user_alone_and_drops_inherited_entries() -> None:
    argv = portable.windows_private_argv(
        r"C:\Users\ann\.config\mcpctl\profiles\sales.toml",
        "CORP\\ann",
        directory=False,
        system_root="D:\\Win",
    )
    assert argv == [
        "D:\\Win\\System32\\icacls.exe",
        r"C:\Users\ann\.config\mcpctl\profiles\sales.toml",
        "/inheritance:r",
        "/grant:r",
        "CORP\\ann:F",
    ]
    folder = portable.windows_private_argv(r"C:\k", "ann", directory=True, system_root="C:\\Windows")
    assert folder[-1] == "ann:(OI)(CI)F"  # what is created in the folder later inherits the grant


def test_the_windows_account_is_domain_and_user_or_the_user_alone() -> None:
    assert portable.windows_user({"USERNAME": "ann", "USERDOMAIN": "CORP"}) == "CORP\\ann"
    assert portable.windows_user({"USERNAME": "ann"}) == "ann"


# ------------------------------------------------------------------------------------------- locks


def test_a_lock_is_exclusive_until_its_holder_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.touch()
    first, second = os.open(path, os.O_RDWR), os.open(path, os.O_RDWR)
    try:
        assert portable.try_lock(first)
        assert not portable.try_lock(second)
    finally:
        os.close(first)
    try:
        assert portable.try_lock(second)
    finally:
        os.close(second)


def test_on_windows_a_folder_is_locked_through_a_file_of_our_own_named_after_it(
    mcpctl_home: Path, tmp_path: Path
) -> None:
    claude, gemini = tmp_path / "Claude", tmp_path / "gemini"
    claude.mkdir()
    gemini.mkdir()
    path = lock.windows_lock_file(claude)
    assert path.parent.parent == mcpctl_home / "state" and path != lock.windows_lock_file(gemini)
    assert lock.windows_lock_file(claude / "." / "..") != path  # the folder's own path, normalised
    held, again, other = (lock._open_lock(folder, windows=True) for folder in (claude, claude, gemini))
    try:
        assert portable.try_lock(held)
        assert not portable.try_lock(again) and portable.try_lock(other)
        assert list(claude.iterdir()) == []  # nothing left in the app's folder
        with pytest.raises(FileNotFoundError):
            lock._open_lock(tmp_path / "not-yet", windows=True)
    finally:
        for fd in (held, again, other):
            os.close(fd)


def test_a_folder_held_by_another_run_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "LOCK_TIMEOUT_S", 0.05)
    with lock.writers_lock(tmp_path), pytest.raises(ClientConfigError) as caught, lock.writers_lock(tmp_path):
        pass
    assert caught.value.hint == "let it finish (or end it), then re-run"


# ------------------------------------------------------------------------ the proxy's stdio, sandbox


@pytest.mark.anyio
async def test_the_windows_stdio_path_reads_pipes_with_a_thread_and_leaves_them_blocking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    peer = LocalPeer(stdin_r, stdout_w)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "platform", "win32")  # only while the peer picks its path
            await peer.open()
        # asyncio's pipe transports would have made both descriptors non-blocking.
        assert os.get_blocking(stdin_r) and os.get_blocking(stdout_w)
        os.write(stdin_w, b'{"id":1}\n{"id":2}\n')
        os.close(stdin_w)
        with anyio.fail_after(BOUND):
            lines = [line async for line in peer.lines(1 << 20)]
        assert lines == [b'{"id":1}', b'{"id":2}']
        await peer.write(b'{"id":1,"result":{}}')
        assert os.read(stdout_r, 1024) == b'{"id":1,"result":{}}\n'
    finally:
        peer.close()
        for fd in (stdin_r, stdout_r, stdout_w):
            os.close(fd)


def test_the_sandbox_refuses_windows_with_what_to_use_instead(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provision.ssh import sandbox

    monkeypatch.setattr(sys, "platform", "win32")
    for action in (sandbox.up, sandbox.down):
        with pytest.raises(SandboxError) as caught:
            action()
        assert caught.value.message == "the sandbox needs Linux or macOS"
        assert caught.value.hint == "use `mcpctl provision --host` on Windows"
