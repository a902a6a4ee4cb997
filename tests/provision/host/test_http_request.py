"""``provision NAME --http`` as a request: the HTTP server is installed after the kind's provisioner, and
kept up to date by every later provision of a profile that has one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provision.host import http_profile, provisioner
from provision.host.bootstrap import BootstrapReport
from provision.host.provisioner import ProvisionResult
from provision.host.request import ProvisionRequest, provision
from provision.profiles import HttpSettings, Profile, save_profile


@pytest.fixture
def installs(mcpctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The provisioner returns the saved profile; enable_http records which profile it installed."""
    installed: list[str] = []

    async def provision_host(name: str, **_: Any) -> ProvisionResult:
        profile = Profile(name=name, host="h.example", user="ann")
        return ProvisionResult(profile, None, BootstrapReport())

    async def enable_http(profile: Profile, **_: Any) -> tuple[Profile, None]:
        installed.append(profile.name)
        return profile.model_copy(update={"http": HttpSettings(port=1234, service="process")}), None

    monkeypatch.setattr(provisioner, "provision_host", provision_host)
    monkeypatch.setattr(http_profile, "enable_http", enable_http)
    return installed


@pytest.mark.anyio
async def test_http_installs_the_server_after_the_provision(installs: list[str]) -> None:
    result = await provision(ProvisionRequest("web", host="ann@h.example", http=True))
    assert installs == ["web"]
    assert result.profile.http is not None and result.profile.http.service == "process"


@pytest.mark.anyio
async def test_without_http_nothing_is_installed_unless_the_profile_has_a_server(installs: list[str]) -> None:
    await provision(ProvisionRequest("plain", host="ann@h.example"))
    assert installs == []
    save_profile(Profile(name="served", host="h.example", user="ann", http=HttpSettings(port=1234)))
    await provision(ProvisionRequest("served"))  # a re-provision restarts its server too
    assert installs == ["served"]
    save_profile(
        Profile(name="remote", host="h.example", user="ann", http=HttpSettings(url="https://x.example/mcp"))
    )
    await provision(ProvisionRequest("remote"))  # served elsewhere: nothing to install on the host
    assert installs == ["served"]


def test_an_http_url_must_be_tls_off_this_machine() -> None:
    for url in (
        "http://sales.example.com/mcp",
        "http://localhost.example.com/mcp",
        "ftp://x/mcp",
        "https://",
    ):
        with pytest.raises(ValueError, match="https"):
            HttpSettings(url=url)
    assert HttpSettings(url="http://127.0.0.1:8000/mcp").url == "http://127.0.0.1:8000/mcp"
