"""What to send where: the project's code tree and the profile's data, as sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision.errors import McpctlError, ProfileError
from provision.sync.manifest import merge
from provision.sync.scan import local_manifest
from provision.sync.sources import SyncSource, project_sources
from tests.provision.sync.helpers import sha, write


def test_project_sources_send_the_code_tree_and_data_files(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for rel in [
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "mcp_sales/server.py",
        "provision/sync/push.py",
        "data/sample.csv",
        "tests/test_x.py",
        "docs/guide.md",
        "bench/sync.py",
    ]:
        write(project / rel, rel)
    elsewhere = write(tmp_path / "my data" / "sales [2024]!.csv", "a,b\n")
    folder = tmp_path / "extra"
    write(folder / "x.csv", "1")
    sources = project_sources(project, [elsewhere, folder], "/srv/app")
    manifest = merge([local_manifest(s) for s in sources])
    assert manifest.root == "/srv/app"
    assert set(manifest.files) == {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "mcp_sales/server.py",
        "provision/sync/push.py",
        "data/sample.csv",
        "data/sales [2024]!.csv",
        "data/extra/x.csv",
    }
    assert manifest.files["data/sales [2024]!.csv"].local_path == elsewhere
    # --delete may remove stale code and data files, never what sync does not manage.
    assert manifest.manages("mcp_sales/old.py") and manifest.manages("data/old.csv")
    assert not manifest.manages("tests/test_x.py") and not manifest.manages("notes.txt")
    with pytest.raises(McpctlError, match="does not exist"):
        project_sources(project, [tmp_path / "missing.csv"], "/srv/app")
    with pytest.raises(McpctlError, match="not the mcpctl project"):
        project_sources(tmp_path, [], "/srv/app")


def test_a_data_file_that_is_a_link_is_followed_wherever_it_leads(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for rel in ["pyproject.toml", "mcp_sales/server.py"]:
        write(project / rel, rel)
    real = write(tmp_path / "exports" / "2024" / "sales.csv", "a,b\n1,2\n")
    named = tmp_path / "mine" / "sales.csv"
    named.parent.mkdir()
    os.symlink(real, named)
    fifo = tmp_path / "mine" / "pipe.csv"
    os.mkfifo(fifo)
    manifest = merge([local_manifest(s) for s in project_sources(project, [named], "/srv/app")])
    assert manifest.files["data/sales.csv"].sha256 == sha(b"a,b\n1,2\n") and manifest.skipped == ()
    with pytest.raises(McpctlError, match=r"pipe\.csv is neither a regular file nor a directory"):
        project_sources(project, [fifo], "/srv/app")


def test_project_sources_refuse_a_relative_remote_dir(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "")
    with pytest.raises(ProfileError) as caught:
        project_sources(tmp_path, [], "srv/app")
    assert caught.value.hint == "set it to one such as /srv/NAME"


def test_project_source_errors_say_what_is_wrong_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(McpctlError) as caught:
        project_sources(tmp_path, [tmp_path / "gone.csv"], "/srv/app")
    assert caught.value.message == f"{tmp_path} has no pyproject.toml, so it is not the mcpctl project"
    assert caught.value.hint == "run the command from the project checkout"
    write(tmp_path / "pyproject.toml", "")
    with pytest.raises(McpctlError) as caught:
        project_sources(tmp_path, [tmp_path / "gone.csv"], "/srv/app")
    assert caught.value.message == f"the data path {tmp_path / 'gone.csv'} does not exist"
    assert caught.value.hint == "fix the profile's `data` list or create the file"


def test_a_source_root_must_be_an_absolute_posix_path(tmp_path: Path) -> None:
    assert SyncSource(tmp_path, "/srv//app/").remote_root == "/srv/app"
    for bad in ("srv/app", "/srv/../etc", "/srv/a\0pp"):
        with pytest.raises(ValueError, match="absolute POSIX path"):
            SyncSource(tmp_path, bad)
