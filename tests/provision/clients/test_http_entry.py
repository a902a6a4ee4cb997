"""``mcpctl config gemini NAME --http``: an httpUrl entry whose key header names an environment variable."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from provision.cli import app
from provision.clients.entries import is_mcpctl_entry
from provision.clients.http_entry import http_entry, local_url
from provision.host.http_keys import ensure_key
from provision.profiles import HttpSettings, Profile, save_profile


def _profile(name: str = "sales", **fields: object) -> Profile:
    values: dict[str, object] = {
        "name": name,
        "host": "203.0.113.7",
        "user": "ann",
        "http": HttpSettings(port=18765),
    }
    values.update(fields)
    return Profile.model_validate(values)


def test_the_entry_names_the_variable_and_never_holds_the_key(mcpctl_home: Path) -> None:
    profile = _profile()
    key = ensure_key(profile)
    entry = http_entry(profile)
    assert entry == {
        "httpUrl": "http://127.0.0.1:18765/mcp",
        "headers": {"X-API-Key": "${MCPCTL_SALES_API_KEY}"},
    }
    assert key not in json.dumps(entry)
    assert is_mcpctl_entry(entry)
    assert not is_mcpctl_entry({"httpUrl": "https://x/mcp", "headers": {"X-API-Key": "literal-key"}})


def test_the_url_is_where_this_machine_reaches_the_server() -> None:
    assert local_url(_profile(http=HttpSettings(port=18765, local_port=9000))) == "http://127.0.0.1:9000/mcp"
    sandbox = _profile(kind="sandbox", host="127.0.0.1", http=HttpSettings(port=18765, local_port=9000))
    assert local_url(sandbox) == "http://127.0.0.1:18765/mcp"  # the sandbox's server runs here
    direct = _profile(http=HttpSettings(url="https://sales.example.com/mcp"))
    assert local_url(direct) == "https://sales.example.com/mcp"


def test_config_gemini_http_writes_and_removes_the_entry(mcpctl_home: Path, tmp_path: Path) -> None:
    save_profile(_profile())
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"theme": "Dracula", "mcpServers": {"other": {"command": "x"}}}))
    runner = CliRunner()
    written = runner.invoke(app, ["config", "gemini", "sales", "--http", "--config-path", str(settings)])
    assert written.exit_code == 0, written.output
    document = json.loads(settings.read_text())
    assert document["theme"] == "Dracula" and "other" in document["mcpServers"]
    assert document["mcpServers"]["sales-sales"]["headers"] == {"X-API-Key": "${MCPCTL_SALES_API_KEY}"}
    assert "export MCPCTL_SALES_API_KEY=" in written.stderr
    again = runner.invoke(app, ["config", "gemini", "sales", "--http", "--config-path", str(settings)])
    assert again.exit_code == 0 and "unchanged" in again.stderr
    removed = runner.invoke(app, ["config", "gemini", "sales", "--remove", "--config-path", str(settings)])
    assert removed.exit_code == 0, removed.output
    assert "sales-sales" not in json.loads(settings.read_text())["mcpServers"]


def test_config_http_is_refused_for_claude_and_for_a_profile_without_a_server(
    mcpctl_home: Path, tmp_path: Path
) -> None:
    save_profile(_profile())
    save_profile(_profile("plain", http=None))
    settings = tmp_path / "settings.json"
    runner = CliRunner()
    claude = runner.invoke(app, ["config", "claude", "sales", "--http", "--config-path", str(settings)])
    assert claude.exit_code != 0 and "mcpctl config claude sales" in claude.stderr
    plain = runner.invoke(app, ["config", "gemini", "plain", "--http", "--config-path", str(settings)])
    assert plain.exit_code == 2 and "provision plain --http" in plain.stderr
    assert not settings.exists()  # nothing written on either refusal
