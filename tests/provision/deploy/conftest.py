"""Fixtures of the deploy tests: one moto mock per module, an empty account per test, fast pacing.

moto fakes AWS; what is tested is our functions. Faults moto cannot produce are injected with a
botocore ``before-call`` handler (tests/provision/ec2/helpers.py), removed after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from provision.deploy import DeployClients, make_clients
from provision.ec2.model import Pacing
from tests.provision.deploy.helpers import REGION, AwsAccount
from tests.provision.ec2.helpers import _HOOKS, FakeClock


@pytest.fixture(scope="module")
def deploy_account() -> Iterator[AwsAccount]:
    """One moto mock and one set of clients per test module (building clients takes a while)."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        mp.setattr("moto.settings.ACM_VALIDATION_WAIT", 0)  # requested certificates are issued at once
        with mock_aws() as mock:
            yield AwsAccount(mock, make_clients(REGION))


@pytest.fixture
def cloud(deploy_account: AwsAccount) -> DeployClients:
    """An empty moto account (default VPC and subnets only)."""
    deploy_account.mock.reset()
    return deploy_account.clients


@pytest.fixture
def pacing() -> Pacing:
    clock = FakeClock()
    return Pacing(poll_s=0, timeout_s=120, clock=clock.clock, sleep=clock.sleep)


@pytest.fixture
def keys(mcpctl_home: Path) -> Path:
    from provision.profiles import keys_dir

    return keys_dir()


@pytest.fixture(autouse=True)
def _unhook() -> Iterator[None]:
    """Remove the event handlers a test registered (the module's clients are shared)."""
    yield
    while _HOOKS:
        client, event, handler = _HOOKS.pop()
        client.meta.events.unregister(event, handler)


def pytest_configure(config: Any) -> None:
    del config
