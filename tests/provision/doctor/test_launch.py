"""What the client starts: the style of a command line and how the doctor names it."""

from __future__ import annotations

import sys

import pytest

from provision.doctor.launch import PROXY_MODULE, Launch, program, ssh_port


@pytest.mark.parametrize(
    ("command", "name"),
    [("/opt/bin/mcpctl", "mcpctl"), ("C:\\Tools\\MCPCTL.exe", "mcpctl"), ("ssh", "ssh"), ("ssh.EXE", "ssh")],
)
def test_program_is_the_bare_lowercase_name(command: str, name: str) -> None:
    assert program(command) == name


@pytest.mark.parametrize(
    ("args", "port"),
    [
        (["u@h", "cmd"], 22),
        (["-p", "2222", "u@h"], 2222),
        (["-p2200", "u@h"], 2200),
        (["-p", "x", "u@h"], None),
    ],
)
def test_ssh_port_reads_both_spellings(args: list[str], port: int | None) -> None:
    assert ssh_port(args) == port


def test_styles_and_their_descriptions() -> None:
    proxy = Launch("/home/u/.local/bin/mcpctl", ("connect", "demo"))
    assert proxy.style == "proxy" and proxy.describe() == "mcpctl connect demo"
    module = Launch(sys.executable, ("-m", PROXY_MODULE, "demo"))
    assert module.style == "proxy"
    ssh = Launch(
        "/usr/bin/ssh", ("-p", "2222", "-o", "BatchMode=yes", "u@h", "exec /srv/demo/.venv/bin/python")
    )
    assert ssh.style == "ssh"
    assert ssh.describe() == "ssh u@h `exec /srv/demo/.venv/bin/python`"
    other = Launch("/usr/bin/node", ("server.js",))
    assert other.style == "other" and other.describe() == "/usr/bin/node server.js"
