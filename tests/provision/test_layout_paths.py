"""layout.py: where everything lives on a host under its remote_dir, and the server's command line."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import pytest

from provision.errors import ProfileError
from provision.layout import RemoteLayout


def test_every_path_is_absolute_and_under_the_remote_dir() -> None:
    layout = RemoteLayout.of("/srv/app")
    assert layout.root == PurePosixPath("/srv/app")
    paths = {
        "state": layout.state,
        "tools": layout.tools,
        "tools_python": layout.tools_python,
        "uv": layout.uv,
        "stamp": layout.stamp,
        "manifest": layout.manifest,
        "venv": layout.venv,
        "python": layout.python,
        "data": layout.data,
    }
    assert {name: str(path) for name, path in paths.items()} == {
        "state": "/srv/app/.mcpctl",
        "tools": "/srv/app/.mcpctl/tools",
        "tools_python": "/srv/app/.mcpctl/tools/bin/python",
        "uv": "/srv/app/.mcpctl/tools/bin/uv",
        "stamp": "/srv/app/.mcpctl/bootstrap.json",
        "manifest": "/srv/app/.mcpctl/manifest.json",
        "venv": "/srv/app/.venv",
        "python": "/srv/app/.venv/bin/python",
        "data": "/srv/app/data",
    }


def test_a_trailing_slash_names_the_same_root() -> None:
    assert RemoteLayout.of("/srv/app/") == RemoteLayout.of("/srv/app")


@pytest.mark.parametrize("remote_dir", ["srv/app", "", "~/app"])
def test_a_relative_remote_dir_is_refused_with_a_hint(remote_dir: str) -> None:
    with pytest.raises(ProfileError) as info:
        RemoteLayout.of(remote_dir)
    assert info.value.message == f"remote_dir {remote_dir!r} is not an absolute path"
    assert info.value.hint == "set it to one such as /srv/NAME"


@pytest.mark.parametrize(
    "local",
    ["/home/ann/sales.csv", PurePosixPath("/home/ann/sales.csv"), PureWindowsPath(r"C:\Users\ann\sales.csv")],
)
def test_a_data_file_lands_in_data_under_its_base_name(local: str | PurePosixPath | PureWindowsPath) -> None:
    assert RemoteLayout.of("/srv/app").data_file(local) == PurePosixPath("/srv/app/data/sales.csv")


@pytest.mark.parametrize("local", ["/", "", "..", "C:\\"])
def test_a_data_path_without_a_file_name_is_refused(local: str) -> None:
    with pytest.raises(ProfileError, match="has no file name"):
        RemoteLayout.of("/srv/app").data_file(local)


def test_the_server_runs_from_the_venv_python_by_absolute_path() -> None:
    assert RemoteLayout.of("/srv/app").server_argv() == [
        "/srv/app/.venv/bin/python",
        "-I",
        "-S",
        "/srv/app/mcp_sales/warm/attach.py",
    ]
    assert RemoteLayout.of("/srv/app").cold_server_argv("check") == [
        "/srv/app/.venv/bin/python",
        "-m",
        "mcp_sales",
        "check",
    ]


def test_server_argv_passes_data_columns_and_extra_arguments_in_order() -> None:
    argv = RemoteLayout.of("/srv/app").server_argv(
        ["/home/ann/sales.csv"],
        {"date": "Order Date", "revenue": "Sales $"},
        ["--log-level", "debug"],
    )
    assert argv == [
        "/srv/app/.venv/bin/python",
        "-I",
        "-S",
        "/srv/app/mcp_sales/warm/attach.py",
        "--data",
        "/srv/app/data/sales.csv",
        "--column",
        "date=Order Date",
        "--column",
        "revenue=Sales $",
        "--log-level",
        "debug",
    ]


def test_server_args_are_the_argv_without_the_python() -> None:
    layout = RemoteLayout.of("/srv/app")
    args = layout.server_args(["/home/ann/sales.csv"], {"date": "Day"}, ["--log-level", "debug"])
    assert args == ["--data", "/srv/app/data/sales.csv", "--column", "date=Day", "--log-level", "debug"]
    assert layout.server_argv(["/home/ann/sales.csv"], {"date": "Day"}, ["--log-level", "debug"])[4:] == args


def test_columns_may_be_given_as_pairs() -> None:
    argv = RemoteLayout.of("/srv/app").server_argv(columns=[("date", "Day")])
    assert argv[-2:] == ["--column", "date=Day"]


def test_the_server_reads_one_data_file() -> None:
    with pytest.raises(ProfileError) as info:
        RemoteLayout.of("/srv/app").server_argv(["/a.csv", "/b.csv"])
    assert info.value.hint == "keep one"
    assert str(info.value) == "the server reads one data file but the profile lists 2; keep one"
