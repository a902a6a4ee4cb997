"""Fixtures of the EC2 unit tests: a fake clock and the pacing on it; botocore hooks removed after each test.

The moto account itself (``moto_account``, ``aws``) is tests/provision/conftest.py's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provision import ec2 as e
from tests.provision.ec2.helpers import FakeClock, fast_pacing, remove_hooks


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pacing(fake_clock: FakeClock) -> e.Pacing:
    return fast_pacing(fake_clock)


@pytest.fixture(autouse=True)
def _unhook() -> Iterator[None]:
    """Remove the event handlers a test registered (the module's clients are shared)."""
    yield
    remove_hooks()
