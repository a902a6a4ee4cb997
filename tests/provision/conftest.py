"""Fixtures shared by the EC2 tests: a moto account with Canonical's Ubuntu AMI parameters published.

``moto_account`` (module scope)
    One moto mock and one set of us-east-1 clients per test module (building a botocore EC2 client
    takes about a second). Fake credentials and region are set in the environment while it lives.
    ``moto_account.fresh()`` empties the account and publishes the two Ubuntu AMI parameters again;
    ``moto_account.amis`` maps ``amd64``/``arm64`` to the registered image ids.

``aws`` (function scope)
    ``moto_account.fresh()`` for every test: an empty account, its :class:`~provision.ec2.Ec2Clients`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws

from provision import ec2 as e
from tests.provision.ec2.helpers import moto_env

REGION = "us-east-1"
_GET_PARAMETER = "before-call.ssm.GetParameter"


class _Http:
    """The little of an HTTP response botocore reads when a before-call handler answers."""

    def __init__(self, status_code: int = 200) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""


class MotoAccount:
    """A moto account whose SSM client answers Canonical's public Ubuntu parameters."""

    def __init__(self, mock: Any, clients: e.Ec2Clients) -> None:
        self.mock = mock
        self.clients = clients
        self.amis: dict[str, str] = {}
        self._handler: Callable[..., Any] | None = None

    def fresh(self) -> e.Ec2Clients:
        """Empty the account, register an Ubuntu image per architecture and publish their parameters."""
        self.mock.reset()
        self.amis = {}
        for arch, moto_arch in (("amd64", "x86_64"), ("arm64", "arm64")):
            image = self.clients.ec2.register_image(
                Name=f"ubuntu-noble-24.04-{arch}",
                Architecture=moto_arch,  # type: ignore[arg-type]
                RootDeviceName="/dev/sda1",
                VirtualizationType="hvm",
            )
            self.amis[arch] = image["ImageId"]
        self._publish({e.AMI_PARAMETER.format(arch=arch): ami for arch, ami in self.amis.items()})
        return self.clients

    def _publish(self, values: dict[str, str]) -> None:
        """Answer GetParameter for AWS-published names; other names fall through to moto.

        moto refuses put_parameter under the reserved /aws/ prefix, as AWS does, so the public
        parameters Canonical publishes cannot be seeded through the API.
        """
        self.unpublish()

        def handler(params: dict[str, Any], **_: Any) -> tuple[_Http, dict[str, Any]] | None:
            name = json.loads(params["body"] or b"{}").get("Name", "")  # SSM speaks JSON: the body is bytes
            if name not in values:
                return None
            return _Http(), {"Parameter": {"Name": name, "Value": values[name], "Type": "String"}}

        self.clients.ssm.meta.events.register(_GET_PARAMETER, handler)
        self._handler = handler

    def unpublish(self) -> None:
        """Stop answering the parameters (the clients outlive a reset)."""
        if self._handler is not None:
            self.clients.ssm.meta.events.unregister(_GET_PARAMETER, self._handler)
            self._handler = None


@pytest.fixture(scope="module")
def moto_account() -> Iterator[MotoAccount]:
    """One moto mock and one set of clients per module (see the module docstring)."""
    with pytest.MonkeyPatch.context() as mp:
        moto_env(mp, REGION)  # fresh() registers the two images the tests need
        with mock_aws() as mock:
            account = MotoAccount(mock, e.make_clients(REGION))
            try:
                yield account
            finally:
                account.unpublish()


@pytest.fixture
def aws(moto_account: MotoAccount) -> e.Ec2Clients:
    """A fresh, empty moto account with Canonical's Ubuntu AMI parameters published in us-east-1."""
    return moto_account.fresh()
