"""marker.py: the marker line that separates the login shell's junk from a command's own output."""

from __future__ import annotations

import subprocess

from provision.ssh.marker import as_bytes, split_marker, tail, with_marker


def test_the_marker_line_carries_the_commands_pid_through_a_real_shell() -> None:
    command, marker = with_marker("sh -c 'echo $$; echo out'", stderr=True)
    assert command.endswith("exec sh -c 'echo $$; echo out'")
    done = subprocess.run(
        ["sh", "-c", "echo junk from an rc file; " + command], capture_output=True, check=True
    )
    found = split_marker(done.stdout, marker)
    assert found is not None
    pid, rest = found
    assert rest.decode().splitlines() == [str(pid), "out"]  # exec kept the shell's pid
    assert split_marker(done.stderr, marker) is not None  # printed on stderr too


def test_two_markers_differ_and_a_traced_shell_cannot_echo_one_whole() -> None:
    (first, one), (_, two) = with_marker("true", stderr=False), with_marker("true", stderr=False)
    assert one != two
    assert one.decode() not in first  # printed in two halves


def test_split_marker_needs_the_whole_line() -> None:
    assert split_marker(b"junk\nMARK 42\nout", b"MARK") == (42, b"out")
    assert split_marker(b"MARK x\nout", b"MARK") == (None, b"out")
    assert split_marker(b"junk\nMARK 42", b"MARK") is None  # the line is not finished yet
    assert split_marker(b"junk only\n", b"MARK") is None


def test_tail_keeps_the_last_lines_on_one_line() -> None:
    assert tail("\n".join(f"line {i}" for i in range(20)) + "\n\n") == " | ".join(
        f"line {i}" for i in range(12, 20)
    )
    assert tail(" \n") == "(no error output)"
    assert len(tail("x" * 5000)) == 800


def test_as_bytes_takes_whatever_asyncssh_returns() -> None:
    assert as_bytes(b"a") == b"a"
    assert as_bytes("é") == "é".encode()
    assert as_bytes(None) == b""
