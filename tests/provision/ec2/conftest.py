"""Fixtures of the EC2 unit tests: a fake clock and the pacing on it; botocore hooks removed after each test.

The moto account itself (``moto_account``, ``aws``) is tests/provision/conftest.py's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provision import ec2 as e
from tests.provision.ec2.helpers import _HOOKS, FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pacing(fake_clock: FakeClock) -> e.Pacing:
    return e.Pacing(poll_s=0, timeout_s=120, clock=fake_clock.clock, sleep=fake_clock.sleep)


@pytest.fixture(autouse=True)
def _unhook() -> Iterator[None]:
    """Remove the event handlers a test registered (the module's clients are shared)."""
    yield
    while _HOOKS:
        client, event, handler = _HOOKS.pop()
        client.meta.events.unregister(event, handler)
