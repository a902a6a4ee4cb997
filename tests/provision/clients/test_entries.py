"""The entries mcpctl writes (proxy and ssh style), exactly, and how an entry is recognised as ours."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from provision.clients import entries, programs
from provision.clients.entries import EntryInputs
from provision.errors import ClientConfigError, ProfileError
from provision.layout import RemoteLayout
from tests.provision.clients.helpers import (
    inputs,
    posix_system,
    windows,
)


def test_ssh_entry_args_exactly(tmp_path: Path) -> None:
    entry = entries.ssh_entry(inputs(tmp_path), posix_system(tmp_path), ssh_path="/usr/bin/ssh")

    assert entry == {
        "command": "/usr/bin/ssh",
        "args": [
            "-T",
            "-F", "none",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={tmp_path}/state/known_hosts/demo",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
            "-o", "ConnectTimeout=10",
            "-i", f"{tmp_path}/keys/demo_ed25519",
            "-p", "2222",
            "ubuntu@203.0.113.7",
            "exec /home/ubuntu/mcpctl/demo/.venv/bin/python -I -S"
            " /home/ubuntu/mcpctl/demo/mcp_sales/warm/attach.py"
            " --data /home/ubuntu/mcpctl/demo/data/sales.csv",
        ],
    }  # fmt: skip


def test_ssh_entry_options_follow_the_profile(tmp_path: Path) -> None:
    entry = entries.ssh_entry(
        inputs(
            tmp_path,
            identity_file=None,
            use_agent=True,
            use_ssh_config=True,
            host_key_alias="mcpctl-demo",
            keepalive_interval=7.5,
            connect_timeout=3,
        ),
        posix_system(tmp_path),
        ssh_path="/usr/bin/ssh",
    )
    args = entry["args"]
    assert "-F" not in args and "-i" not in args and "IdentitiesOnly=yes" not in args
    assert {"HostKeyAlias=mcpctl-demo", "ServerAliveInterval=8", "ConnectTimeout=3"} <= set(args)


def test_remote_command_is_quoted_exactly_once(tmp_path: Path) -> None:
    remote_dir = "/srv/sales team/it's $HOME"
    entry_inputs = inputs(
        tmp_path,
        remote_dir=remote_dir,
        data=(str(tmp_path / "Q4 sales;rm -rf.csv"),),
        columns=(("operation", "CITY NAME"),),
        server_args=("--log-level", "debug"),
    )
    argv = entry_inputs.server_argv()
    assert argv == [
        f"{remote_dir}/.venv/bin/python",
        "-I",
        "-S",
        f"{remote_dir}/mcp_sales/warm/attach.py",
        "--data",
        f"{remote_dir}/data/Q4 sales;rm -rf.csv",
        "--column",
        "operation=CITY NAME",
        "--log-level",
        "debug",
    ]
    entry = entries.ssh_entry(entry_inputs, posix_system(tmp_path), ssh_path="/usr/bin/ssh")
    # What the remote shell does with the one line ssh sends it:
    assert shlex.split(entry["args"][-1]) == ["exec", *argv]


def test_the_server_command_is_the_layouts_and_refuses_what_the_server_cannot_take(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not an absolute path"):
        inputs(tmp_path, remote_dir="srv/demo").server_argv()
    with pytest.raises(ProfileError, match="reads one data file"):
        inputs(tmp_path, remote_dir="/srv/demo", data=("a.csv", "b.csv")).server_argv()
    windows_path = inputs(tmp_path, remote_dir="/srv/demo", data=(r"C:\Users\me\sales.csv",))
    assert windows_path.server_argv() == [
        "/srv/demo/.venv/bin/python",
        "-I",
        "-S",
        "/srv/demo/mcp_sales/warm/attach.py",
        "--data",
        "/srv/demo/data/sales.csv",
    ]
    assert windows_path.server_argv() == RemoteLayout.of("/srv/demo").server_argv(["sales.csv"])


def test_an_unmapped_column_reaches_the_server_as_given(tmp_path: Path) -> None:
    """``revenue=`` (an empty column) unmaps the field on the server: the entry passes it on unchanged."""
    argv = inputs(tmp_path, remote_dir="/srv/demo", data=(), columns=(("revenue", ""),)).server_argv()
    assert argv[-2:] == ["--column", "revenue="]


def test_nul_in_server_args_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="NUL byte"):
        entries.ssh_entry(
            inputs(tmp_path, server_args=("a\0b",)), posix_system(tmp_path), ssh_path="/usr/bin/ssh"
        )


def test_ssh_option_paths_with_spaces_and_percent_are_quoted_for_ssh(tmp_path: Path) -> None:
    odd = tmp_path / "John Smith" / "100%"
    entry = entries.ssh_entry(
        inputs(tmp_path, known_hosts=odd / "known_hosts", identity_file=odd / "id"),
        posix_system(tmp_path),
        ssh_path="/usr/bin/ssh",
    )
    assert f'UserKnownHostsFile="{tmp_path}/John Smith/100%%/known_hosts"' in entry["args"]
    assert f'IdentityFile="{tmp_path}/John Smith/100%%/id"' in entry["args"]
    with pytest.raises(ProfileError, match="cannot be passed to ssh"):
        entries.ssh_entry(
            inputs(tmp_path, known_hosts=tmp_path / 'a"b'), posix_system(tmp_path), ssh_path="ssh"
        )


def test_windows_ssh_entry_has_programdata_and_system_ssh(tmp_path: Path) -> None:
    entry = entries.ssh_entry(inputs(tmp_path), windows(tmp_path))
    assert entry["command"] == "C:\\Windows\\System32\\OpenSSH\\ssh.exe"
    assert entry["env"] == {"PROGRAMDATA": "C:\\ProgramData"}
    assert programs.find_ssh(windows(tmp_path, SYSTEMROOT="D:\\Win")) == "D:\\Win\\System32\\OpenSSH\\ssh.exe"


def test_ssh_entry_needs_a_host(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="mcpctl provision demo"):
        entries.ssh_entry(inputs(tmp_path, host=None), posix_system(tmp_path), ssh_path="/usr/bin/ssh")


def test_proxy_entry_uses_the_mcpctl_beside_the_interpreter(tmp_path: Path) -> None:
    system = posix_system(tmp_path, MCPCTL_HOME=str(tmp_path / "mh"), PATH="")
    system.executable.parent.mkdir(parents=True)
    (system.executable.parent / "mcpctl").write_text("#!/bin/sh\n")

    entry = entries.proxy_entry("demo", system)

    assert entry == {
        "command": str(tmp_path / "venv" / "bin" / "mcpctl"),
        "args": ["connect", "demo"],
        "env": {"MCPCTL_HOME": str(tmp_path / "mh")},
    }


def test_proxy_entry_passes_on_absolute_location_variables_only(tmp_path: Path) -> None:
    system = posix_system(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_STATE_HOME="relative/state")
    entry = entries.proxy_entry("demo", system, mcpctl_path="/opt/bin/mcpctl")
    assert entry["env"] == {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def test_proxy_entry_falls_back_to_path_then_explains(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "mcpctl"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert entries.proxy_entry("demo", posix_system(tmp_path, PATH=str(bindir))) == {
        "command": str(script),
        "args": ["connect", "demo"],
    }
    with pytest.raises(ClientConfigError, match="cannot find the mcpctl executable"):
        entries.proxy_entry("demo", posix_system(tmp_path, PATH=str(tmp_path / "empty")))


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"command": "/u/bin/mcpctl", "args": ["connect", "x"]}, True),
        ({"command": "C:\\Users\\me\\.venv\\Scripts\\MCPCTL.EXE", "args": ["connect", "x"]}, True),
        ({"command": "C:\\Windows\\ssh.exe", "args": ["h", "exec /r/.venv/bin/python -m mcp_sales"]}, True),
        ({"command": "ssh", "args": ["h", "exec /r/.venv/bin/python -I -S /r/mcp_sales/warm/attach.py"]},
         True),
        ({"command": "ssh", "args": ["h", "exec /r/.venv/bin/python /r/not_mcp_sales/warm/attach.py.bak"]},
         False),
        ({"command": "/usr/bin/ssh", "args": ["h", "exec other-server"]}, False),
        ({"command": "/u/bin/mcpctl", "args": ["status"]}, False),
        ({"command": "npx", "args": ["connect"]}, False),
        ({"url": "https://example.com/mcp"}, False),
        ("not an object", False),
    ],
)  # fmt: skip
def test_is_mcpctl_entry(entry: object, expected: bool) -> None:
    assert entries.is_mcpctl_entry(entry) is expected


def test_entry_inputs_from_a_real_profile(mcpctl_home: Path, tmp_path: Path) -> None:
    from provision.profiles import Profile, known_hosts_path

    profile = Profile(
        name="demo",
        host="example.org",
        user="ubuntu",
        remote_dir="/srv/demo",
        identity_file=tmp_path / "id",
        data=[tmp_path / "sales.csv"],
        columns={"operation": "CITY"},
        server_args=["--log-level", "DEBUG"],
    )
    got = EntryInputs.from_profile(profile)
    assert got.known_hosts == known_hosts_path("demo")
    assert (got.host, got.port, got.data, got.columns) == (
        "example.org",
        22,
        (str(tmp_path / "sales.csv"),),
        (("operation", "CITY"),),
    )
