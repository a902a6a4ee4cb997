"""The executables an entry launches are found by absolute path, or the error says how to get one."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.clients import programs
from provision.errors import ClientConfigError
from tests.provision.clients.helpers import posix_system, tool_system


def test_ssh_is_found_on_the_path_by_absolute_path(tmp_path: Path) -> None:
    assert programs.find_ssh(tool_system(tmp_path)) == str(tmp_path / "bin" / "ssh")


def test_no_ssh_names_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError) as caught:
        programs.find_ssh(posix_system(tmp_path, PATH=str(tmp_path / "empty")))
    assert caught.value.message == "cannot find the OpenSSH client (ssh)"
    assert caught.value.hint is not None and caught.value.hint.endswith("or use the proxy style")


def test_the_mcpctl_beside_the_interpreter_wins_over_the_path(tmp_path: Path) -> None:
    system = tool_system(tmp_path)
    (tmp_path / "bin" / "mcpctl").write_text("#!/bin/sh\n")
    assert programs.find_mcpctl(system) == str(system.executable.parent / "mcpctl")
