"""Writing and removing our entry for each client, end to end: the file, the app's name, a real sshd."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision.clients import configure, locations
from provision.clients.system import LocalSystem
from provision.errors import ClientConfigChanged, ClientConfigError
from tests.provision.clients.helpers import (
    BOUND,
    NOW,
    SECRET_KEY_TEXT,
    SERVER,
    app_saves_before_our_rename,
    inputs,
    listing,
    ours,
    tool_system,
)


def test_a_file_that_keeps_changing_is_left_as_the_app_saved_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    versions = ['{"written": "by the app"}', '{"written": "by the app, again"}']
    app_saves_before_our_rename(monkeypatch, path, versions)

    with pytest.raises(ClientConfigChanged) as caught:
        configure.configure_client(inputs(tmp_path), path=path, system=tool_system(tmp_path), now=NOW)

    assert caught.value.path == path and caught.value.exit_code == 6
    message = str(caught.value)
    # Either writer may have been the other one: neither is blamed alone, and the way out is named.
    assert "changed while mcpctl updated it (another mcpctl run or Claude Desktop saved it)" in message
    assert "run the command again" in message
    assert path.read_text() == versions[-1]
    assert [n for n in listing(tmp_path) if n.endswith(".tmp")] == []


def test_concurrent_mcpctl_processes_lose_no_entry(mcpctl_home: Path, tmp_path: Path) -> None:
    """Real `mcpctl config claude` processes started together on one file: every entry arrives."""
    from provision.profiles import Profile, save_profile

    names = [f"p{n}" for n in range(4)]
    for name in names:
        save_profile(Profile(name=name, host="203.0.113.7", user="ubuntu"))
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    mcpctl = Path(sys.executable).parent / "mcpctl"
    env = {**os.environ, "MCPCTL_HOME": str(mcpctl_home)}
    processes = [
        subprocess.Popen(
            [str(mcpctl), "config", "claude", name, "--config-path", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    results = [(p.wait(timeout=BOUND), *p.communicate(timeout=BOUND)) for p in processes]

    assert [status for status, _, _ in results] == [0] * len(names), results
    assert sorted(json.loads(path.read_text())["mcpServers"]) == [f"sales-{name}" for name in names]


@pytest.mark.parametrize("client", ["claude", "gemini"])
def test_a_read_only_config_is_refused_and_left_untouched(tmp_path: Path, client: locations.Client) -> None:
    path = tmp_path / ("claude_desktop_config.json" if client == "claude" else "settings.json")
    path.write_text(json.dumps({"mcpServers": {SERVER: ours()}, "theme": "dark"}))
    path.chmod(0o444)
    before = path.read_bytes()
    system = tool_system(tmp_path)

    entry = inputs(tmp_path)
    for attempt in (
        lambda: configure.configure_client(entry, client=client, path=path, style="ssh", system=system),
        lambda: configure.configure_client(entry, client=client, path=path, system=system, dry_run=True),
        lambda: configure.remove_client_entry("demo", client=client, path=path, system=system),
    ):
        with pytest.raises(ClientConfigError) as caught:
            attempt()
        assert caught.value.exit_code == 6
        assert caught.value.message == f"{path} is read-only (mode 0444), so mcpctl leaves it as it is"
        assert (
            caught.value.hint
            == f"make it writable (`chmod u+w {path}`) and run the command again, or edit it by hand"
        )

    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert listing(tmp_path) == sorted([path.name, "bin", "venv"])  # no backup, no temp file


def test_no_key_material_or_secrets_in_the_json(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "demo_ed25519"
    key.parent.mkdir()
    key.write_text(SECRET_KEY_TEXT)
    system = tool_system(tmp_path, AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI-secret")
    path = tmp_path / "claude_desktop_config.json"

    for style in ("ssh", "proxy"):
        configure.configure_client(
            inputs(tmp_path, identity_file=key), style=style, path=path, system=system, now=NOW
        )
        text = path.read_text()
        assert str(key) in text or style == "proxy"
        assert "PRIVATE KEY" not in text and "b3BlbnNzaC1rZXkt" not in text
        assert "wJalrXUtnFEMI" not in text


def test_configure_then_remove_for_both_clients(tmp_path: Path) -> None:
    system = tool_system(tmp_path)
    for client in ("claude", "gemini"):
        change = configure.configure_client(inputs(tmp_path), client=client, system=system, now=NOW)
        assert change.action == "added"
        assert change.path == locations.config_path(client, system)
        assert (
            configure.configure_client(inputs(tmp_path), client=client, system=system).action == "unchanged"
        )
        updated = configure.configure_client(
            inputs(tmp_path), client=client, style="ssh", system=system, now=NOW
        )
        assert updated.action == "updated" and updated.backup is not None
        removed = configure.remove_client_entry("demo", client=client, system=system, now=NOW)
        assert (removed.action, json.loads(change.path.read_text())) == ("removed", {"mcpServers": {}})


def test_server_name_override_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    change = configure.configure_client(
        inputs(tmp_path), server_name="my sales", path=path, system=tool_system(tmp_path), style="ssh"
    )
    assert list(json.loads(path.read_text())["mcpServers"]) == ["my sales"] == [change.server_name]
    with pytest.raises(ClientConfigError, match="not usable as a server name"):
        configure.remove_client_entry("demo", server_name=" ", path=path)


def test_ssh_entry_runs_as_written_against_a_real_sshd(sshd: Any, tmp_path: Path) -> None:
    """Run command + args from the written JSON; the remote 'python' reports the argv it received."""
    odd = tmp_path / "my keys 100%"
    odd.mkdir()
    known_hosts = odd / "known_hosts"
    shutil.copy(sshd.known_hosts, known_hosts)
    identity = odd / "id"
    shutil.copy2(sshd.client_key, identity)
    identity.chmod(0o600)
    remote_dir = tmp_path / "remote dir" / "it's"
    fake_python = remote_dir / ".venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    report = "import json, sys; print(json.dumps(sys.argv[1:]))"
    fake_python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(report)} "$@"\n')
    fake_python.chmod(0o755)
    entry_inputs = inputs(
        tmp_path,
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        remote_dir=str(remote_dir),
        known_hosts=known_hosts,
        identity_file=identity,
        data=("/local/sales Q4.csv",),
        columns=(("operation", "CITY NAME"),),
    )
    path = tmp_path / "claude_desktop_config.json"
    configure.configure_client(entry_inputs, style="ssh", path=path, system=LocalSystem.current())
    entry = json.loads(path.read_text())["mcpServers"]["sales-demo"]

    done = subprocess.run(
        [entry["command"], *entry["args"]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == entry_inputs.server_argv()[1:]
