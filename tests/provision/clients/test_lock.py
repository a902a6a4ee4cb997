"""mcpctl runs take turns on a folder of client configs; a run that holds it too long is named."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from provision.clients import lock
from provision.errors import ClientConfigError


def test_a_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(timeout=60)
        with lock.writers_lock(tmp_path):
            order.append("second")

    thread = threading.Thread(target=second, daemon=True)
    with lock.writers_lock(tmp_path):
        thread.start()
        inside.set()
        thread.join(timeout=0.2)  # it cannot get in while we hold the lock
        order.append("first")
    thread.join(timeout=60)
    assert order == ["first", "second"]


def test_a_writer_that_holds_the_folder_too_long_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "LOCK_TIMEOUT_S", 0.05)
    with (
        lock.writers_lock(tmp_path),
        pytest.raises(ClientConfigError) as caught,
        lock.writers_lock(tmp_path),  # the second run: it gives up
    ):
        pass  # pragma: no cover - never entered
    assert caught.value.message == f"another mcpctl run has been editing the files in {tmp_path} for 0.05 s"
    assert caught.value.hint == "let it finish (or end it), then re-run"


def test_no_lock_is_taken_for_a_dry_run_or_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    with lock.writers_lock(tmp_path), lock.writers_lock(tmp_path, enabled=False):
        pass
    with lock.writers_lock(tmp_path / "not yet"):
        pass
