"""Fixtures of the proxy tests: the stand-in server script (see ``helpers.STANDIN``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.provision.connect.helpers import STANDIN


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in server script."""
    path = tmp_path_factory.mktemp("standin") / "standin.py"
    path.write_text(STANDIN)
    return path


@pytest.fixture
def shared_standin() -> Iterator[Path]:
    """The stand-in script in a directory every account can read (for the noisy account)."""
    shared = Path(tempfile.mkdtemp(prefix="mcpctl-proxy-test-"))
    shared.chmod(0o755)
    script = shared / "standin.py"
    script.write_text(STANDIN)
    script.chmod(0o644)
    yield script
    script.unlink()
    shared.rmdir()
