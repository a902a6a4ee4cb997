"""Shared fixtures: a real OpenSSH sshd on 127.0.0.1, and an isolated MCPCTL_HOME.

The sshd itself is started by ``tests/sshd.py``, the one launcher the benchmarks use too.

Fixtures
--------
``sshd`` (session scope)
    One real ``/usr/sbin/sshd`` for the whole test session, listening on 127.0.0.1 on a free port, with
    a host key and a client key generated at test time. It yields an :class:`SshdServer`:

    - ``host``, ``port``, ``user`` (the current user: root in CI), ``client_key`` (private key path,
      authorised for every login user), ``host_key_line`` (``ssh-ed25519 AAAA...``), ``known_hosts``
      (a file pinning ``[127.0.0.1]:PORT``; treat it as read-only, copy it to change it), ``log_path``
      (sshd's own log, LogLevel VERBOSE);
    - ``target(**overrides)`` -> a :class:`provision.ssh.target.Target` that logs in as ``user`` with
      ``client_key`` and the pinned ``known_hosts`` (``name="test"``, so advice in error messages reads
      ``mcpctl ... test``); any Target field can be overridden;
    - ``noisy_target(**overrides)`` -> a Target for ``noisy_user`` (``mcpctl-noisy``), an account whose
      ``~/.bashrc`` and ``~/.profile`` print junk to stdout and stderr, as some real hosts do; every
      junk line contains ``noise``. It skips the test when not root (only a root sshd can log in as
      another user, and creating the account needs root);
    - ``session_processes()`` -> ``[(pid, command line)]`` of what the live sessions run right now;
    - ``kill_session_processes()`` kills every per-connection sshd process and their descendants while
      the listener keeps running, i.e. drops every live SSH session the way a network drop or a
      server-side kill does (killing the listener alone ends no session). It affects all sessions on
      this server, so call it only from tests that own every connection open at that moment;
    - ``log_tail(lines)`` -> the end of the sshd log (also attached to the report of a failed test);
    - ``process`` (the listener's Popen) and ``stop()``.

    Tests using it skip (with the reason) when ``/usr/sbin/sshd`` is missing. As root the fixture
    creates ``/run/sshd`` (sshd's privilege-separation directory) and the ``mcpctl-noisy`` account
    (idempotently; it stays on the machine).

``sshd_factory`` (function scope)
    ``sshd_factory(**config)`` starts a private sshd like the session one, with sshd_config keywords
    overridden (``sshd_factory(MaxSessions="10")``, ``sshd_factory(ForceCommand="...")``), stopped
    when the test ends. Use it to change the server's settings, kill its sessions or its listener
    (``server.process``) without disturbing other tests.

``mcpctl_home`` (function scope)
    Points ``MCPCTL_HOME`` at a fresh temporary directory and returns it, so nothing touches the real
    ``~/.config/mcpctl`` or ``~/.local/state/mcpctl``.

``anyio_backend`` (session scope)
    ``"asyncio"``: asyncssh runs on asyncio only. Mark async tests with ``@pytest.mark.anyio``.
"""

from __future__ import annotations

import getpass
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sshd import SSHD, SshdServer, SshKeys, ensure_noisy_user, generate_keys, start_sshd

__all__ = ["SshKeys", "SshdServer"]  # test modules name the fixture types from here


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncssh is asyncio-only."""
    return "asyncio"


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshKeys]:
    """The session's client key pair, generated at test time (mode 0600)."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: install openssh-server to run the real-SSH tests")
    if not sys.platform.startswith("linux"):
        pytest.skip("the real-sshd fixture reads /proc: Linux only")
    keys = generate_keys(Path(tempfile.mkdtemp(prefix="mcpctl-keys-")))
    yield keys
    shutil.rmtree(keys.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def _login_users() -> tuple[str, str | None]:
    """The main login user (the current one) and the noisy account (None unless root)."""
    return getpass.getuser(), ensure_noisy_user()


_RUNNING: list[SshdServer] = []


@pytest.fixture(scope="session")
def sshd(ssh_keys: SshKeys, _login_users: tuple[str, str | None]) -> Iterator[SshdServer]:
    """The session-wide real sshd (see the module docstring)."""
    user, noisy = _login_users
    server = start_sshd(ssh_keys, user=user, noisy_user=noisy, overrides={})
    _RUNNING.append(server)
    try:
        yield server
    finally:
        _RUNNING.remove(server)
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def sshd_factory(
    ssh_keys: SshKeys, _login_users: tuple[str, str | None]
) -> Iterator[Callable[..., SshdServer]]:
    """Start private sshd servers with sshd_config overrides; all are stopped when the test ends."""
    user, noisy = _login_users
    started: list[SshdServer] = []

    def start(**overrides: str) -> SshdServer:
        server = start_sshd(ssh_keys, user=user, noisy_user=noisy, overrides=overrides)
        started.append(server)
        _RUNNING.append(server)
        return server

    yield start
    for server in started:
        _RUNNING.remove(server)
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def mcpctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MCPCTL_HOME at a fresh directory for this test and return it."""
    home = tmp_path / "mcpctl-home"
    monkeypatch.setenv("MCPCTL_HOME", str(home))
    return home


@pytest.fixture(scope="session", autouse=True)
def _stop_the_checkouts_warm_server() -> Iterator[None]:
    """Sessions launched on this checkout (remote_dir = the repository) start its warm server: stop it
    when the test run ends instead of leaving it to its idle timeout."""
    yield
    from mcp_sales.warm import attach

    attach.ask("stop", attach.runtime_dir(str(Path(__file__).resolve().parent.parent)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the sshd log tail to the report of a failed test that used an sshd."""
    report = yield
    if report.failed and _RUNNING and {"sshd", "sshd_factory"} & set(getattr(item, "fixturenames", ())):
        for server in _RUNNING:
            report.sections.append((f"sshd log tail (port {server.port})", server.log_tail()))
    return report
