"""The proxy's per-profile log: its path, ``tail``, ``follow`` (appends, rotation), ``mcpctl logs``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provision.cli import app
from provision.connect.log import follow, log_path, tail
from provision.errors import ProfileError
from provision.profiles import Profile, log_dir, save_profile

BOUND = 10.0  # seconds a follow() may wait for a line: an upper bound, never an expectation


def _until(seconds: float = BOUND) -> Callable[[], bool]:
    """A stop condition for follow(): true once ``seconds`` have passed (a test never hangs)."""
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


# ------------------------------------------------------------------------------------------- path


def test_the_log_path_is_the_profiles_file_in_the_log_directory(mcpctl_home: Path) -> None:
    assert log_path("demo") == log_dir() / "demo.log"
    assert log_path("demo").parent.is_relative_to(mcpctl_home)


@pytest.mark.parametrize("name", ["../demo", "Demo", "", "a/b"])
def test_a_name_that_is_not_a_profile_name_is_refused(mcpctl_home: Path, name: str) -> None:
    with pytest.raises(ProfileError, match="not a valid profile name"):
        log_path(name)


# ------------------------------------------------------------------------------------------- tail


def test_tail_returns_the_last_lines_without_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(path, 3) == ["line 97", "line 98", "line 99"]
    assert tail(path, 1000) == [f"line {i}" for i in range(100)]
    assert tail(path, 0) == []


def test_tail_keeps_an_unfinished_last_line_and_handles_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"first\r\nsecond\nunfinished")
    assert tail(path, 2) == ["second", "unfinished"]
    assert tail(path, 5) == ["first", "second", "unfinished"]
    path.write_bytes(b"")
    assert tail(path, 5) == []
    path.write_bytes(b"\n\n")
    assert tail(path, 5) == ["", ""]


def test_tail_reads_across_blocks_and_replaces_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    long_line = "x" * 100_000  # longer than one block read from the end
    path.write_bytes(b"old\n" * 50_000 + long_line.encode() + b"\n\xff\xfe broken\nlast\n")
    assert tail(path, 3) == [long_line, "\ufffd\ufffd broken", "last"]


def test_tail_of_a_missing_file_is_an_error_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"cannot read the log .*missing\.log"):
        tail(tmp_path / "missing.log", 5)


# ----------------------------------------------------------------------------------------- follow


def test_follow_yields_lines_appended_after_the_call_only(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("old 1\nold 2\n")
    lines = follow(path, stop=_until(), interval=0.01)
    _append(path, "new 1\nnew 2\npar")  # written before the first next(): still new
    assert [next(lines), next(lines)] == ["new 1", "new 2"]
    _append(path, "tial\n")
    assert next(lines) == "partial"  # an unfinished line is held until its end arrives


def test_follow_ends_when_the_stop_condition_holds_and_nothing_is_new(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("old\n")
    lines = follow(path, stop=lambda: True)
    _append(path, "pending\n")
    assert list(lines) == ["pending"]  # what arrived is yielded before stopping


def test_follow_carries_on_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("")
    lines = follow(path, stop=_until(), interval=0.01)
    _append(path, "before\n")
    assert next(lines) == "before"
    _append(path, "last words\nno end")  # written just before the rotation
    path.rename(tmp_path / "x.log.1")  # what RotatingFileHandler does
    fresh = ["fresh 1", "fresh 2 " + "x" * 100]  # longer than the old file: only its identity changed
    path.write_text("\n".join(fresh) + "\n")
    assert [next(lines) for _ in range(4)] == ["last words", "no end", *fresh]


def test_follow_restarts_from_the_top_after_a_truncation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("x" * 200 + "\n")
    lines = follow(path, stop=_until(), interval=0.01)
    path.write_text("short\n")  # truncated in place, same file
    assert next(lines) == "short"


def test_follow_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    lines = follow(path, stop=_until(), interval=0.01)
    path.write_text("hello\n")
    assert next(lines) == "hello"


# -------------------------------------------------------------------------------------------- CLI


runner = CliRunner()


def test_cli_logs_prints_the_last_lines_of_the_profiles_log(mcpctl_home: Path) -> None:
    save_profile(Profile(name="demo", host="127.0.0.1", user="someone"))
    empty = runner.invoke(app, ["logs", "demo"])
    assert empty.exit_code == 0 and "no log yet" in empty.output
    log_path("demo").write_text("".join(f"line {i}\n" for i in range(10)))
    result = runner.invoke(app, ["logs", "demo", "-n", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["line 7", "line 8", "line 9"]
    unknown = runner.invoke(app, ["logs", "nosuch"])
    assert unknown.exit_code == 2 and "no profile named 'nosuch'" in unknown.output


def test_cli_logs_refuses_a_negative_line_count(mcpctl_home: Path) -> None:
    save_profile(Profile(name="demo", host="127.0.0.1", user="someone"))
    log_path("demo").write_text("line 0\n")
    negative = runner.invoke(app, ["logs", "demo", "-n", "-1"])
    assert negative.exit_code == 2 and negative.stdout == ""
    assert "greater than or equal to" in " ".join(negative.output.split())
