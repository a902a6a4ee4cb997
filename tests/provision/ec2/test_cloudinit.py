"""provision.ec2.cloudinit: the user-data parses, installs exactly the host key we pin, and the watchdog."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml  # type: ignore[import-untyped]  # locked via moto; the user-data must be real YAML

from provision.ec2 import cloudinit as ci
from provision.errors import McpctlError


@pytest.fixture(scope="module")
def host_key() -> ci.HostKey:
    return ci.generate_host_key(comment="mcpctl-sales")


def parse(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n")  # cloud-init ignores the document without this line
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def test_installs_exactly_the_pinned_host_key(host_key: ci.HostKey) -> None:
    doc = parse(ci.render_user_data(host_key, autostop_minutes=0))
    assert doc["ssh_deletekeys"] is True
    assert doc["ssh_genkeytypes"] == []
    assert set(doc["ssh_keys"]) == {"ed25519_private", "ed25519_public"}
    assert doc["ssh_keys"]["ed25519_public"] == host_key.public_line

    # the private key the host will use belongs to the public key the client pins
    private = asyncssh.import_private_key(doc["ssh_keys"]["ed25519_private"])
    assert private.get_algorithm() == "ssh-ed25519"
    derived = private.export_public_key("openssh").decode().split()[:2]
    assert derived == host_key.public_line.split()[:2]
    assert doc["ssh_keys"]["ed25519_private"] == host_key.private_openssh


def test_each_host_key_is_fresh() -> None:
    assert ci.generate_host_key().public_line != ci.generate_host_key().public_line


def test_host_key_is_not_in_repr(host_key: ci.HostKey) -> None:
    assert "PRIVATE KEY" not in repr(host_key)


def test_packages_and_no_passwords(host_key: ci.HostKey) -> None:
    doc = parse(ci.render_user_data(host_key))
    assert doc["packages"] == ["python3-venv", "python3-pip", "curl"]
    assert doc["package_update"] is True
    assert doc["ssh_pwauth"] is False


def test_no_watchdog_when_autostop_is_off(host_key: ci.HostKey) -> None:
    text = ci.render_user_data(host_key, autostop_minutes=0)
    doc = parse(text)
    assert "write_files" not in doc and "runcmd" not in doc
    assert "mcpctl-idle" not in text


def test_watchdog_when_autostop_is_on(host_key: ci.HostKey) -> None:
    doc = parse(ci.render_user_data(host_key, autostop_minutes=30))
    files = {f["path"]: f for f in doc["write_files"]}
    assert set(files) == {ci.WATCHDOG_SCRIPT_PATH, ci.WATCHDOG_SERVICE_PATH, ci.WATCHDOG_TIMER_PATH}
    script = files[ci.WATCHDOG_SCRIPT_PATH]
    assert script["permissions"] == "0755" and script["owner"] == "root:root"
    assert script["content"] == ci.watchdog_script(30)
    assert "-ge 1800" in script["content"]  # 30 minutes, in seconds
    assert "pgrep -u ubuntu '^sshd'" in script["content"]
    assert "systemctl poweroff" in script["content"]
    assert "/run/" in script["content"]  # the idle count restarts on every boot
    assert f"ExecStart={ci.WATCHDOG_SCRIPT_PATH}" in files[ci.WATCHDOG_SERVICE_PATH]["content"]
    timer = files[ci.WATCHDOG_TIMER_PATH]["content"]
    assert "OnUnitActiveSec=1min" in timer and "WantedBy=timers.target" in timer
    assert ["systemctl", "enable", "--now", "mcpctl-idle.timer"] in doc["runcmd"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_watchdog_script_is_valid_sh() -> None:
    # -n parses without executing anything (it must never run poweroff here)
    result = subprocess.run(["sh", "-n"], input=ci.watchdog_script(5), text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_user_data_stays_under_the_ec2_limit(host_key: ci.HostKey) -> None:
    text = ci.render_user_data(host_key, autostop_minutes=120)
    assert len(text.encode()) < ci.USER_DATA_LIMIT
    with pytest.raises(McpctlError, match="16384-byte limit"):
        ci.render_user_data(host_key, packages=[f"package-number-{i}" for i in range(1000)])


def test_public_key_reads_back_from_user_data(host_key: ci.HostKey) -> None:
    text = ci.render_user_data(host_key, autostop_minutes=10)
    assert ci.host_public_key_from_user_data(text) == host_key.public_line
    assert ci.host_public_key_from_user_data("#cloud-config\npackages: []\n") is None
    assert ci.host_public_key_from_user_data("  ed25519_public: ssh-rsa AAAA\n") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"autostop_minutes": -1},
        {"login_user": "ubuntu; reboot"},
        {"packages": ["curl && reboot"]},
    ],
)
def test_rejects_values_that_would_break_the_document(host_key: ci.HostKey, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ci.render_user_data(host_key, **kwargs)


def test_rejects_non_ed25519_host_keys(host_key: ci.HostKey) -> None:
    rsa = ci.HostKey(private_openssh=host_key.private_openssh, public_line="ssh-rsa AAAA x")
    with pytest.raises(ValueError, match="ed25519"):
        ci.render_user_data(rsa)


def test_watchdog_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError):
        ci.watchdog_script(0)


_NAMED_SLEEPER = (
    "import ctypes, os, time\n"
    "ctypes.CDLL(None).prctl(15, os.environ['KERNEL_NAME'].encode(), 0, 0, 0)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.mark.parametrize(("name", "busy"), [("mcp-sales-warm", False), ("mcp-sales", True)])
def test_the_watchdog_counts_warm_sessions_but_not_an_idle_warm_server(name: str, busy: bool) -> None:
    """The script's own test, in a private PID namespace where the only other process is one whose
    command line names mcp_sales (as a server's does) and whose kernel name is ``name``."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        pytest.skip("a private PID namespace needs root and unshare (Linux)")
    script = ci.watchdog_script(30, login_user=getpass.getuser())
    # A file, as on the host, in a directory whose name (unlike the test's) names no server.
    where = Path(tempfile.mkdtemp(prefix="watchdog-"))
    check = where / "check.sh"
    check.write_text(
        script[script.index("busy() {") : script.index("if busy; then")]
        + 'fifo="$3/ready"; mkfifo "$fifo"\n'
        + '"$1" -c "$2" mcp_sales > "$fifo" &\n'
        + 'read -r _ < "$fifo"\n'
        + "if busy; then echo busy; else echo idle; fi\n"
        + "kill $!\n"
    )
    namespace = ["unshare", "--pid", "--fork", "--mount-proc", "sh", str(check)]
    try:
        done = subprocess.run(
            [*namespace, sys.executable, _NAMED_SLEEPER, str(where)],
            env={**os.environ, "KERNEL_NAME": name},  # not in an argv: the watchdog reads those
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(where)
    assert done.stdout.strip() == ("busy" if busy else "idle"), done.stderr
