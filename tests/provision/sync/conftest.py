"""Fixtures of the sync tests: a tree holding every kind of entry a walk can meet."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from tests.provision.sync.helpers import write


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    """A tree holding every kind of entry a walk can meet, and a secret just outside it."""
    root = tmp_path / "project"
    write(root / "pkg" / "mod.py", "mod")
    write(root / "secret.env", "TOKEN=1")
    write(root / ".mcpignore", "*.env\n")
    write(tmp_path / "secret", "outside")
    links = {
        "passwd": "/etc/passwd",
        "pkg/secret": "../../secret",  # leaves the tree through ..
        "pkg/alias.py": "mod.py",  # stays inside: followed
        "pkg/config.txt": "../secret.env",  # inside, but to an ignored file
        "ignored.env": "/etc/passwd",  # ignored itself: neither sent nor listed
        "pkg_link": "pkg",
        "dangling": "nowhere",
        "null": "/dev/null",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
    if os.geteuid() == 0:
        os.mknod(root / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # as /dev/null
    return root
