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
from tests.provision.ec2.helpers import FakeClock, fast_pacing, moto_env, remove_hooks


@pytest.fixture(scope="module")
def deploy_account() -> Iterator[AwsAccount]:
    """One moto mock and one set of clients per test module (building clients takes a while)."""
    with pytest.MonkeyPatch.context() as mp:
        moto_env(mp, REGION)
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
    return fast_pacing(FakeClock())


@pytest.fixture
def keys(mcpctl_home: Path) -> Path:
    from provision.profiles import keys_dir

    return keys_dir()


@pytest.fixture(autouse=True)
def _unhook() -> Iterator[None]:
    """Remove the event handlers a test registered (the module's clients are shared)."""
    yield
    remove_hooks()


def pytest_configure(config: Any) -> None:
    del config
