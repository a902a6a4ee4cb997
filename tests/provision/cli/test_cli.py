"""The mcpctl command line: wiring, messages and exit codes (the library has its own tests).

Commands run in-process through Typer's ``CliRunner`` with ``MCPCTL_HOME`` pointing at a fresh directory.
Human output goes to stderr and ``--json`` to stdout, so every check looks at the right stream. The
commands that reach a host use the real sshd fixture or the real sandbox; none installs anything
(``test_provisioner.py`` does that once).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner, Result

from mcp_sales.errors import InvalidInput
from mcp_sales.mapping import parse_column_overrides
from provision.cli import app
from provision.cli import provision as provision_cli
from provision.host import provisioner
from provision.layout import RemoteLayout
from provision.profiles import (
    Profile,
    known_hosts_path,
    list_profiles,
    load_profile,
    profiles_dir,
    save_profile,
)
from provision.ssh import sandbox
from provision.ssh.hostkeys import pin_host_key
from provision.sync import project_sources
from provision.sync.scan import local_manifest

if TYPE_CHECKING:
    from tests.conftest import SshdServer

REPO = Path(__file__).resolve().parents[3]
# The server's data stack and its MCP runtime; mcp_sales.mapping (the column parser mcpctl shares with
# the server) is light and allowed.
HEAVY = ("asyncssh", "boto3", "botocore", "pandas", "duckdb", "prophet", "pyarrow", "mcp", "mcp_sales.server")
TIMEOUT = 60.0  # seconds for a subprocess, an upper bound only


def run(*args: str) -> Result:
    """``mcpctl ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    """Output with every run of whitespace made one space (rich wraps lines to the terminal width)."""
    return " ".join(text.split())


def squeezed(text: str) -> str:
    """Output without any whitespace: for long paths, which rich folds anywhere."""
    return "".join(text.split())


def error_line(result: Result) -> str:
    """The one red line a failed command prints (flattened): the last thing on stderr."""
    before, found, message = flat(result.stderr).rpartition("error: ")
    assert found, result.stderr
    assert "error: " not in before, result.stderr  # one error, not several
    return found + message


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_profile(sshd: SshdServer, name: str, remote_dir: Path, **fields: object) -> Profile:
    """Save a profile for the sshd fixture's host with its key pinned, as `provision` leaves it."""
    profile = Profile(
        name=name,
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        identity_file=sshd.client_key,
        remote_dir=str(remote_dir),
        **fields,  # type: ignore[arg-type]
    )
    save_profile(profile)
    pin_host_key(known_hosts_path(name), sshd.host, sshd.port, sshd.host_key_line)
    return profile


@pytest.fixture
def frozen_project(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sync from a copy of the files ``mcpctl sync`` sends, so edits to the checkout during the run
    cannot make a second sync differ from the first."""
    copy = tmp_path_factory.mktemp("project")
    code = project_sources(REPO, [], "/snapshot")[0]
    for rel, entry in local_manifest(code, hash_files=False).files.items():
        assert entry.local_path is not None
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(entry.local_path, copy / rel)
    if (REPO / ".mcpignore").is_file():
        shutil.copy2(REPO / ".mcpignore", copy / ".mcpignore")
    monkeypatch.setattr(provisioner, "project_root", lambda: copy)
    return copy


# ------------------------------------------------------------------------------------------ profile


def test_profile_list_when_there_are_none(mcpctl_home: Path) -> None:
    human = run("profile", "list")
    assert human.exit_code == 0
    assert human.stdout == ""
    assert "no profiles yet" in flat(human.stderr)
    assert "mcpctl provision NAME --sandbox" in flat(human.stderr)
    as_json = run("profile", "list", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == []


def test_profile_list_shows_every_profile_and_flags_a_broken_one(mcpctl_home: Path) -> None:
    save_profile(Profile(name="alpha", host="alpha.example", port=2222, user="ann", remote_dir="/srv/alpha"))
    save_profile(Profile(name="beta", host="10.0.0.7", user="bob"))
    (profiles_dir() / "gamma.toml").write_text('host = "g.example"\nuser = "gil"\nprot = 22\n')

    as_json = run("profile", "list", "--json")
    assert as_json.exit_code == 0, as_json.output
    listed = {p["name"]: p for p in json.loads(as_json.stdout)}
    assert list(listed) == ["alpha", "beta", "gamma"]
    assert listed["alpha"]["port"] == 2222 and listed["alpha"]["remote_dir"] == "/srv/alpha"
    assert listed["beta"]["remote_dir"] == "/home/bob/mcpctl/beta"
    assert "field 'prot': unknown key (did you mean 'port'?)" in listed["gamma"]["error"]

    human = run("profile", "list")
    assert human.exit_code == 0
    assert human.stdout == ""
    text = flat(human.stderr)
    assert "ann@alpha.example:2222" in text and "/srv/alpha" in text
    assert "bob@10.0.0.7:22" in text
    assert "gamma" in text and "invalid" in text


def test_profile_show_prints_the_toml_and_where_the_pin_is(mcpctl_home: Path) -> None:
    save_profile(Profile(name="alpha", host="alpha.example", user="ann", columns={"operation": "CITY"}))
    human = run("profile", "show", "alpha")
    assert human.exit_code == 0, human.output
    assert human.stdout == ""
    assert 'host = "alpha.example"' in human.stderr
    assert 'operation = "CITY"' in human.stderr
    assert squeezed(f"# known_hosts: {known_hosts_path('alpha')}") in squeezed(human.stderr)

    as_json = run("profile", "show", "alpha", "--json")
    assert as_json.exit_code == 0
    shown = json.loads(as_json.stdout)
    assert (shown["name"], shown["host"], shown["user"], shown["port"]) == (
        "alpha",
        "alpha.example",
        "ann",
        22,
    )
    assert shown["columns"] == {"operation": "CITY"}


def test_profile_remove_deletes_the_profile_and_its_pin(mcpctl_home: Path, sshd: SshdServer) -> None:
    host_profile(sshd, "gone", Path("/srv/gone"))
    host_profile(sshd, "kept", Path("/srv/kept"))
    removed = run("profile", "remove", "gone")
    assert removed.exit_code == 0, removed.output
    assert "removed profile 'gone'" in removed.stderr
    assert list_profiles() == ["kept"]
    assert not known_hosts_path("gone").exists()
    assert known_hosts_path("kept").exists()

    again = run("profile", "remove", "gone")
    assert again.exit_code == 2
    assert "no profile named 'gone'" in error_line(again)
    assert "(existing: kept)" in error_line(again)


@pytest.mark.parametrize(
    "args",
    [
        ("profile", "show", "nope"),
        ("profile", "remove", "nope"),
        ("sync", "nope"),
        ("sync", "nope", "--dry-run"),
    ],
    ids=["show", "remove", "sync", "sync-dry-run"],
)
def test_an_unknown_profile_is_exit_2_with_the_list_of_profiles(
    mcpctl_home: Path, args: tuple[str, ...]
) -> None:
    save_profile(Profile(name="alpha", host="a.example", user="ann"))
    save_profile(Profile(name="beta", host="b.example", user="bob"))
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    line = error_line(result)
    assert "no profile named 'nope'" in line
    assert "(existing: alpha, beta)" in line
    assert "mcpctl provision nope --host user@host" in line


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('host = "h.example"\nuser = "ann"\nprot = 22\n', "field 'prot': unknown key (did you mean 'port'?)"),
        ('host = "h.example"\nuser = "ann"\nport = "twenty-two"\n', "field 'port'"),
        (
            'host = "h.example"\nuser = "ann"\nremote_dir = "srv/app"\n',
            "field 'remote_dir': must be an absolute",
        ),
        ('host = "h.example"\nuser = "ann"\nport = 22\nport = 23\n', "invalid TOML"),
    ],
    ids=["unknown-key", "wrong-type", "relative-remote-dir", "toml-syntax"],
)
def test_a_broken_profile_file_is_exit_2_naming_the_field(
    mcpctl_home: Path, toml: str, expected: str
) -> None:
    path = profiles_dir() / "broken.toml"
    path.write_text(toml)
    result = run("sync", "broken")
    assert result.exit_code == 2
    line = error_line(result)
    assert expected in line
    assert str(path) in line  # which file to fix


# ------------------------------------------------------------------------------------------ sandbox


@pytest.fixture
def sandbox_home(mcpctl_home: Path) -> Iterator[Path]:
    yield mcpctl_home
    sandbox.down()  # whatever a failed test left running


def test_sandbox_up_status_down(sandbox_home: Path) -> None:
    stopped = run("sandbox", "status")
    assert stopped.exit_code == 1
    assert "sandbox is stopped; start it with `mcpctl sandbox up`" in flat(stopped.stderr)
    assert json.loads(run("sandbox", "status", "--json").stdout) is None

    up = run("sandbox", "up", "--json")
    assert up.exit_code == 0, up.output
    started = json.loads(up.stdout)
    assert started["host"] == "127.0.0.1" and started["port"] > 0 and started["pid"] > 0
    info = sandbox.status()
    assert info is not None and info.pid == started["pid"]

    again = run("sandbox", "up")
    assert again.exit_code == 0
    assert f"sandbox up on 127.0.0.1:{started['port']} (pid {started['pid']}" in flat(again.stderr)
    assert "next: `mcpctl provision NAME --sandbox`" in flat(again.stderr)

    status = run("sandbox", "status")
    assert status.exit_code == 0
    assert f"sandbox running on 127.0.0.1:{started['port']} (pid {started['pid']}" in flat(status.stderr)
    status_json = json.loads(run("sandbox", "status", "--json").stdout)
    assert (status_json["pid"], status_json["port"]) == (started["pid"], started["port"])
    assert status_json["uptime"] >= 0

    down = run("sandbox", "down")
    assert down.exit_code == 0
    assert "sandbox stopped" in down.stderr
    assert sandbox.status() is None
    assert "sandbox was not running" in run("sandbox", "down").stderr
    assert run("sandbox", "status").exit_code == 1


def test_sandbox_up_on_a_taken_port_is_a_sandbox_error(sandbox_home: Path) -> None:
    first = json.loads(run("sandbox", "up", "--json").stdout)
    other = closed_port()
    moved = run("sandbox", "up", "--port", str(other))
    assert moved.exit_code == 8
    assert f"already runs on port {first['port']}, not {other}" in error_line(moved)
    assert "mcpctl sandbox down" in error_line(moved)


# ---------------------------------------------------------------------------------------- provision


@pytest.mark.parametrize(
    "flags",
    [("--host", "ann@h.example", "--sandbox"), ("--sandbox", "--ec2"), ("--host", "ann@h.example", "--ec2")],
    ids=["host+sandbox", "sandbox+ec2", "host+ec2"],
)
def test_provision_refuses_more_than_one_kind_of_host(mcpctl_home: Path, flags: tuple[str, ...]) -> None:
    result = run("provision", "two", *flags)
    assert result.exit_code == 1
    line = error_line(result)
    assert "choose one of" in line and "not several" in line
    for flag in flags:
        if flag.startswith("--"):
            assert flag in line
    assert list_profiles() == []


@pytest.mark.parametrize(
    ("column", "words"),
    [
        ("bad", "is not FIELD=COLUMN; write it like --column units=QUANTITYORDERED"),
        ("=CITY", "is not FIELD=COLUMN"),
        ("operation", "is not FIELD=COLUMN"),
        ("operation=", "needs a column name after '='; operation is required"),
        ("city=CITY", "names an unknown field 'city'; fields are: operation, product_id"),
    ],
)
def test_provision_refuses_a_column_mapping_the_server_would_refuse(
    mcpctl_home: Path, column: str, words: str
) -> None:
    result = run("provision", "cols", "--host", "ann@127.0.0.1:1", "--column", column)
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(f"error: --column {column!r} {words}")
    with pytest.raises(InvalidInput) as server:  # the server says the same, word for word
        parse_column_overrides([column])
    assert line == f"error: {server.value}"
    assert list_profiles() == []


def test_provision_accepts_every_column_mapping_the_server_accepts(mcpctl_home: Path) -> None:
    """``revenue=`` unmaps an optional field on the server; mcpctl keeps it and passes it on."""
    columns = ["Operation=CITY", "revenue=", "date_format=%d/%m/%Y"]
    assert provision_cli.parse_columns(columns) == parse_column_overrides(columns)
    profile = Profile(name="cols", host="h.example", user="ann", columns=parse_column_overrides(columns))
    save_profile(profile)
    assert load_profile("cols").columns == {"operation": "CITY", "revenue": "", "date_format": "%d/%m/%Y"}
    argv = RemoteLayout.of(profile.remote_dir).server_argv((), profile.columns)
    assert argv[4:] == [
        "--column",
        "operation=CITY",
        "--column",
        "revenue=",
        "--column",
        "date_format=%d/%m/%Y",
    ]
    assert parse_column_overrides([argv[5], argv[7], argv[9]]) == profile.columns  # what the server reads


def test_a_profile_holds_only_columns_the_server_accepts() -> None:
    with pytest.raises(ValidationError, match="names an unknown field 'city'"):
        Profile(name="cols", host="h.example", user="ann", columns={"city": "CITY"})
    with pytest.raises(ValidationError, match="contains '='"):
        Profile(name="cols", host="h.example", user="ann", columns={"revenue=x": "c"})


def test_provision_rejects_ec2_options_without_ec2(mcpctl_home: Path) -> None:
    result = run("provision", "plain", "--host", "ann@127.0.0.1:1", "--region", "eu-west-1")
    assert result.exit_code == 1
    assert error_line(result) == (
        "error: --region does not apply to --host: only --ec2 launches an instance; drop the option"
    )
    assert list_profiles() == []


def _nothing_was_started_or_written(home: Path) -> None:
    assert list_profiles() == []
    assert sandbox.status() is None
    assert [p for p in home.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        (["--remote-dir", "/srv/sales"], "the sandbox always uses {sandbox_dir}/hosts/box"),
        (["--identity-file", "/keys/id_ed25519"], "the sandbox logs in with its own client key"),
        (["--host-key", "SHA256:" + "A" * 43], "the sandbox's host key is read from its own files"),
        (["--yes"], "the sandbox's host key is read from its own files, so there is nothing to confirm"),
        (["--region", "eu-west-1"], "only --ec2 launches an instance"),
        (["--dry-run"], "only --ec2 has a launch plan to preview"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_provision_sandbox_refuses_options_that_do_not_apply(
    mcpctl_home: Path, option: list[str], reason: str
) -> None:
    try:
        result = run("provision", "box", "--sandbox", *option)
        assert result.exit_code == 1, result.output
        expected = reason.format(sandbox_dir=sandbox.sandbox_dir())
        assert error_line(result) == (
            f"error: {option[0]} does not apply to --sandbox: {expected}; drop the option"
        )
        _nothing_was_started_or_written(mcpctl_home)
    finally:
        sandbox.down()  # only if the refusal failed to happen


def test_provision_names_every_option_that_does_not_apply_in_one_sentence(mcpctl_home: Path) -> None:
    try:
        result = run("provision", "box", "--sandbox", "--identity-file", "/k", "--yes", "--volume-gb", "8")
        assert result.exit_code == 1, result.output
        assert error_line(result) == (
            "error: --identity-file, --yes and --volume-gb do not apply to --sandbox: the sandbox logs in "
            "with its own client key, and the sandbox's host key is read from its own files, so there is "
            "nothing to confirm, and only --ec2 launches an instance; drop these options"
        )
        _nothing_was_started_or_written(mcpctl_home)
    finally:
        sandbox.down()


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        (["--identity-file", "/keys/id_ed25519"], "mcpctl makes the instance's login key"),
        (["--host-key", "SHA256:" + "A" * 43], "mcpctl makes the instance's host key and pins it itself"),
        (["--yes"], "mcpctl makes the instance's host key, so there is nothing to confirm"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_provision_ec2_refuses_options_that_do_not_apply_before_asking_aws(
    mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch, option: list[str], reason: str
) -> None:
    # No credentials at all: any AWS call would fail with exit 7 instead of this refusal.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(mcpctl_home / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(mcpctl_home / "no-aws-credentials"))
    result = run("provision", "cloud", "--ec2", "--region", "us-east-1", "--dry-run", *option)
    assert result.exit_code == 1, result.output
    assert error_line(result) == f"error: {option[0]} does not apply to --ec2: {reason}; drop the option"
    _nothing_was_started_or_written(mcpctl_home)


def test_a_saved_sandbox_profile_re_run_without_a_flag_is_still_the_sandbox(mcpctl_home: Path) -> None:
    profile = Profile(name="box", kind="sandbox", host="127.0.0.1", port=closed_port(), user="ann")
    save_profile(profile)
    saved = (profiles_dir() / "box.toml").read_bytes()
    try:
        result = run("provision", "box", "--remote-dir", "/srv/elsewhere")
        assert result.exit_code == 1, result.output
        assert error_line(result) == (
            f"error: --remote-dir does not apply to the sandbox profile 'box': the sandbox always uses "
            f"{profile.remote_dir}; drop the option"
        )
        assert (profiles_dir() / "box.toml").read_bytes() == saved
        assert sandbox.status() is None
    finally:
        sandbox.down()


@pytest.mark.parametrize(
    ("kind", "free"),
    [("sandbox", "`mcpctl profile remove taken`"), ("ec2", "`mcpctl destroy taken` (it also terminates")],
)
def test_provision_host_on_a_name_taken_by_another_kind_names_the_way_out(
    mcpctl_home: Path, kind: str, free: str
) -> None:
    save_profile(Profile(name="taken", kind=kind, host="127.0.0.1", port=2222, user="ann"))
    saved = (profiles_dir() / "taken.toml").read_bytes()
    result = run("provision", "taken", "--host", f"ann@127.0.0.1:{closed_port()}", "--yes")
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert f"profile 'taken' is a {kind} profile for ann@127.0.0.1:2222, not a host one" in line
    assert f"choose another name, or free this one first with {free}" in line
    assert (profiles_dir() / "taken.toml").read_bytes() == saved


def test_provision_of_a_new_profile_without_a_host_says_how(mcpctl_home: Path) -> None:
    result = run("provision", "fresh")
    assert result.exit_code == 2
    assert "profile 'fresh' does not exist yet; pass --host user@host[:port] (or --sandbox)" in error_line(
        result
    )


def test_provision_with_a_wrong_host_key_is_exit_4_and_saves_nothing(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    wrong = str(asyncssh.import_public_key(other).get_fingerprint("sha256"))
    result = run(
        "provision",
        "wrong",
        "--host",
        f"{sshd.user}@{sshd.host}:{sshd.port}",
        "--host-key",
        other,
        "--identity-file",
        str(sshd.client_key),
        "--remote-dir",
        str(tmp_path / "app"),
    )
    assert result.exit_code == 4
    line = error_line(result)
    assert f"does not have the host key {wrong}" in line
    assert list_profiles() == []
    assert not (tmp_path / "app").exists()


def test_provision_without_a_terminal_or_yes_refuses_an_unvouched_key(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path
) -> None:
    # CliRunner's stdin is not a terminal: nobody can confirm the fingerprint, so it is refused.
    result = run(
        "provision",
        "unvouched",
        "--host",
        f"{sshd.user}@{sshd.host}:{sshd.port}",
        "--identity-file",
        str(sshd.client_key),
        "--remote-dir",
        str(tmp_path / "app"),
    )
    assert result.exit_code == 4
    line = error_line(result)
    assert "was not confirmed" in line and "--host-key SHA256:" in line
    assert list_profiles() == []


def test_provision_of_an_unreachable_host_is_exit_3(mcpctl_home: Path) -> None:
    port = closed_port()
    result = run("provision", "away", "--host", f"ann@127.0.0.1:{port}", "--host-key", "SHA256:" + "A" * 43)
    assert result.exit_code == 3
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in error_line(result)
    assert "`mcpctl doctor away` checks each step" in error_line(result)
    assert list_profiles() == []


# ------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("client", ["claude", "gemini"])
def test_config_name_clash_hints_the_options_that_exist_and_they_work(
    mcpctl_home: Path, tmp_path: Path, client: str
) -> None:
    save_profile(Profile(name="demo", host="203.0.113.7", user="ann"))
    path = tmp_path / "client.json"
    foreign = {"command": "npx", "args": ["-y", "some-server"]}
    path.write_text(json.dumps({"mcpServers": {"sales-demo": foreign}}))
    before = path.read_bytes()

    refused = run("config", client, "demo", "--config-path", str(path))
    assert refused.exit_code == 6, refused.output
    assert "pass --server-name with another name, or --force to replace it" in error_line(refused)
    refused_removal = run("config", client, "demo", "--config-path", str(path), "--remove")
    assert refused_removal.exit_code == 6, refused_removal.output
    assert "pass --force to remove it anyway" in error_line(refused_removal)
    assert path.read_bytes() == before

    # Each hinted option is real and does what the hint says.
    beside = run("config", client, "demo", "--config-path", str(path), "--server-name", "sales-demo-2")
    assert beside.exit_code == 0, beside.output
    forced = run("config", client, "demo", "--config-path", str(path), "--force")
    assert forced.exit_code == 0, forced.output
    servers = json.loads(path.read_text())["mcpServers"]
    assert list(servers) == ["sales-demo", "sales-demo-2"]
    assert servers["sales-demo"] == servers["sales-demo-2"] != foreign
    removed = run(
        "config", client, "demo", "--config-path", str(path), "--remove", "--server-name", "sales-demo-2"
    )
    assert removed.exit_code == 0, removed.output


def test_config_of_a_read_only_file_is_refused_and_leaves_it_alone(mcpctl_home: Path, tmp_path: Path) -> None:
    save_profile(Profile(name="demo", host="203.0.113.7", user="ann"))
    path = tmp_path / "claude_desktop_config.json"
    path.write_text('{"mcpServers": {}}')
    path.chmod(0o444)

    result = run("config", "claude", "demo", "--config-path", str(path))

    assert result.exit_code == 6, result.output
    assert squeezed(error_line(result)).startswith(squeezed(f"error: {path} is read-only (mode 0444)"))
    assert path.read_text() == '{"mcpServers": {}}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claude_desktop_config.json", "mcpctl-home"]


# --------------------------------------------------------------------------------------------- sync


def test_sync_dry_run_prints_the_plan_and_changes_nothing(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path, frozen_project: Path
) -> None:
    remote_dir = tmp_path / "remote" / "app"
    data = tmp_path / "my-sales.csv"
    data.write_text("OPERATION_NAME,PRODUCT_ID\nDallas,P-1\n")
    host_profile(sshd, "plan", remote_dir, data=[data])

    dry = run("sync", "plan", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout == ""
    text = flat(dry.stderr)
    assert squeezed(text).startswith(squeezed(f"{remote_dir}:"))
    assert "to send" in text and "0 to delete, 0 unchanged" in text
    for path in (
        "pyproject.toml",
        "uv.lock",
        "mcp_sales/server.py",
        "provision/cli/__init__.py",
        "data/my-sales.csv",
    ):
        assert f"+ {path} (new, " in text
    assert not (tmp_path / "remote").exists()  # nothing was created on the host

    as_json = run("sync", "plan", "--dry-run", "--json")
    assert as_json.exit_code == 0
    report = json.loads(as_json.stdout)
    assert report["dry_run"] is True and report["up_to_date"] is False
    assert report["files_sent"] == 0 and report["bytes_sent"] == 0
    assert not (tmp_path / "remote").exists()

    synced = run("sync", "plan", "--json")
    assert synced.exit_code == 0, synced.output
    sent = json.loads(synced.stdout)
    assert sent["dry_run"] is False and sent["files_sent"] > 3
    assert (remote_dir / "data" / "my-sales.csv").read_bytes() == data.read_bytes()

    after = run("sync", "plan", "--dry-run")
    assert after.exit_code == 0
    assert squeezed(after.stderr).startswith(squeezed(f"{remote_dir}: up to date ("))
    human = run("sync", "plan")
    assert human.exit_code == 0
    assert flat(human.stderr).startswith("up to date (")


def test_sync_sends_a_changed_data_file_and_says_what_it_sent(
    mcpctl_home: Path, sshd: SshdServer, tmp_path: Path, frozen_project: Path
) -> None:
    remote_dir = tmp_path / "remote" / "app"
    data = tmp_path / "sales.csv"
    data.write_text("OPERATION_NAME,PRODUCT_ID\nDallas,P-1\n")
    host_profile(sshd, "data", remote_dir, data=[data])
    assert run("sync", "data").exit_code == 0
    data.write_text("OPERATION_NAME,PRODUCT_ID\nDallas,P-1\nAustin,P-2\n")
    size = data.stat().st_size

    dry = run("sync", "data", "--dry-run")
    assert dry.exit_code == 0
    text = flat(dry.stderr)
    assert squeezed(text).startswith(squeezed(f"{remote_dir}: 1 to send ({size} bytes), 0 to delete, "))
    assert text.endswith(f" unchanged ~ data/sales.csv (size, {size} bytes)")  # that file and no other

    synced = run("sync", "data")
    assert synced.exit_code == 0
    assert flat(synced.stderr).startswith(f"sent 1 files ({size} bytes), deleted 0, ")
    assert (remote_dir / "data" / "sales.csv").read_bytes() == data.read_bytes()


def test_sync_of_an_unreachable_host_is_exit_3(mcpctl_home: Path, sshd: SshdServer, tmp_path: Path) -> None:
    profile = host_profile(sshd, "down", tmp_path / "app")
    save_profile(profile.model_copy(update={"port": closed_port()}))
    result = run("sync", "down", "--dry-run")
    assert result.exit_code == 3
    assert "connection refused" in error_line(result)
    assert "mcpctl doctor down" in error_line(result)


# --------------------------------------------------------------------------------------------- help


HELP_SCRIPT = """
import sys
from provision.cli import app
try:
    app(sys.argv[1:], prog_name="mcpctl")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    "args",
    [("--help",), ("provision", "--help"), ("sync", "--help"), ("sandbox", "--help"), ("profile", "list")],
    ids=["help", "provision-help", "sync-help", "sandbox-help", "profile-list"],
)
def test_help_and_light_commands_do_not_import_heavy_modules(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {**os.environ, "MCPCTL_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY=\n" in done.stderr, done.stderr  # none of them was imported
    if args[-1] == "--help":
        assert "Usage: mcpctl" in done.stdout


def test_the_help_check_can_see_a_heavy_import(tmp_path: Path) -> None:
    """The control for the test above: a command that uses asyncssh (the sandbox) is seen importing it."""
    env = {**os.environ, "MCPCTL_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT.format(heavy=HEAVY), "sandbox", "status"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 1  # stopped
    heavy = done.stderr.rpartition("HEAVY=")[2].strip().split(",")
    assert "asyncssh" in heavy


def test_help_lists_every_command_and_group() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    listed = [
        line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and "  " in line
    ]
    expected = [
        "provision",
        "sync",
        "version",
        "connect",
        "doctor",
        "logs",
        "bundle",
        "status",
        "stop",
        "start",
    ]
    groups = ["profile", "sandbox", "config", "deploy"]
    assert listed[:2] == ["--version", "--help"]  # the options come first
    assert listed[2:] == [*expected, "destroy", "tunnel", *groups]

    for group, commands in {
        "profile": ["list", "show", "remove"],
        "sandbox": ["up", "down", "status"],
    }.items():
        sub = CliRunner().invoke(app, [group, "--help"], env={"COLUMNS": "200"})
        assert sub.exit_code == 0 and all(f"│ {command} " in sub.output for command in commands)
    config = CliRunner().invoke(app, ["config", "--help"], env={"COLUMNS": "200"})
    assert "│ claude " in config.output and "│ gemini " in config.output


def test_version_option_prints_the_version_like_the_command() -> None:
    from provision import __version__

    for argv in (["--version"], ["version"]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0 and result.output == f"{__version__}\n"


def test_the_column_parser_mcpctl_shares_with_the_server_is_light() -> None:
    """mcpctl reads --column with the server's parser; importing it must not load the server's stack."""
    script = f"import sys, mcp_sales.mapping; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
