"""provision.ec2.keys: the local client key and the EC2 key pair holding its public half."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from provision import ec2 as e
from provision.ec2 import keys as ec2_keys
from provision.errors import McpctlError
from tests.provision.ec2.helpers import (
    inject_error,
    key_pairs,
    live_instances,
    run,
    spec,
    tags_of,
)

# --------------------------------------------------------------------------------------------------
# the EC2 key pair


def test_mcpctl_key_pair_that_differs_is_replaced(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    other = e.ensure_client_key(tmp_path / "elsewhere", "sales")
    aws.ec2.import_key_pair(
        KeyName="mcpctl-sales",
        PublicKeyMaterial=other.public_line.encode(),
        TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": [{"Key": "mcpctl:profile", "Value": "sales"}]}
        ],
    )
    result = run(aws, tmp_path / "keys", pacing)
    assert ("key-pair", "replaced") in {(c.resource, c.action) for c in result.changes}
    (kp,) = key_pairs(aws)
    assert kp["PublicKey"].split()[1] == result.key.public_line.split()[1] != other.public_line.split()[1]


def test_foreign_key_pair_with_our_name_is_refused(
    aws: e.Ec2Clients, tmp_path: Path, pacing: e.Pacing
) -> None:
    other = e.ensure_client_key(tmp_path / "elsewhere", "sales")
    aws.ec2.import_key_pair(KeyName="mcpctl-sales", PublicKeyMaterial=other.public_line.encode())
    with pytest.raises(McpctlError, match="not created by mcpctl"):
        run(aws, tmp_path / "keys", pacing)
    assert not live_instances(aws)
    (kp,) = key_pairs(aws)  # untouched
    assert kp["PublicKey"].split()[1] == other.public_line.split()[1]


def test_key_match_falls_back_to_the_ec2_fingerprint(tmp_path: Path) -> None:
    # Without PublicKey in the answer, EC2's fingerprint of an imported ed25519 key is the OpenSSH one.
    import asyncssh

    key = e.ensure_client_key(tmp_path, "sales")
    fingerprint = asyncssh.read_private_key(key.path).get_fingerprint("sha256")  # "SHA256:..."
    assert ec2_keys.same_key(ec2_keys.RemoteKey(None, fingerprint, True), key)
    assert ec2_keys.same_key(ec2_keys.RemoteKey(None, fingerprint.removeprefix("SHA256:") + "=", True), key)
    other = e.ensure_client_key(tmp_path / "other", "sales")
    assert not ec2_keys.same_key(ec2_keys.RemoteKey(None, fingerprint, True), other)
    assert not ec2_keys.same_key(ec2_keys.RemoteKey(other.public_line.split()[1], None, True), key)


def test_key_pair_is_imported_then_reused(aws: e.Ec2Clients, tmp_path: Path) -> None:
    key = e.ensure_client_key(tmp_path, "sales")
    assert ec2_keys.find_key_pair(aws.ec2, spec()) is None

    assert ec2_keys.ensure_key_pair(aws.ec2, spec(), key, None) == e.Change(
        "key-pair", "created", "mcpctl-sales"
    )
    (kp,) = key_pairs(aws)
    assert kp["KeyName"] == "mcpctl-sales" and tags_of(kp)["mcpctl:profile"] == "sales"
    remote = ec2_keys.find_key_pair(aws.ec2, spec())
    assert remote is not None and remote.ours
    assert remote.public_blob == key.public_line.split()[1]

    imports = inject_error(aws.ec2, "ImportKeyPair", "UnauthorizedOperation")
    deletes = inject_error(aws.ec2, "DeleteKeyPair", "UnauthorizedOperation")
    assert ec2_keys.ensure_key_pair(aws.ec2, spec(), key, remote) == e.Change(
        "key-pair", "reused", "mcpctl-sales"
    )
    assert imports == [0] and deletes == [0]


def test_find_key_pair_tells_whose_it_is(aws: e.Ec2Clients, tmp_path: Path) -> None:
    key = e.ensure_client_key(tmp_path, "sales")
    other = e.ensure_client_key(tmp_path / "other", "sales")
    aws.ec2.import_key_pair(KeyName="mcpctl-sales", PublicKeyMaterial=key.public_line.encode())
    # a longer name that starts alike, tagged for the profile, holding another key: not the one asked for
    aws.ec2.import_key_pair(
        KeyName="mcpctl-sales-old",
        PublicKeyMaterial=other.public_line.encode(),
        TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": [{"Key": "mcpctl:profile", "Value": "sales"}]}
        ],
    )
    remote = ec2_keys.find_key_pair(aws.ec2, spec())
    assert remote is not None
    assert not remote.ours  # untagged: not mcpctl's to replace
    assert ec2_keys.same_key(remote, key) and not ec2_keys.same_key(remote, other)


# --------------------------------------------------------------------------------------------------
# client key


def test_client_key_is_generated_once_and_private(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = e.ensure_client_key(keys, "sales")
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert (keys / "mcpctl-sales.pub").read_text().strip() == first.public_line
    assert first.public_line.startswith("ssh-ed25519 ")
    first.path.chmod(0o644)
    second = e.ensure_client_key(keys, "sales")
    assert second == first
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600  # tightened: OpenSSH would refuse it


def test_unreadable_client_key_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "mcpctl-sales").write_text("not a key")
    with pytest.raises(McpctlError, match="cannot read the SSH client key"):
        e.ensure_client_key(tmp_path, "sales")


def test_load_client_key_does_not_create_one(tmp_path: Path) -> None:
    assert ec2_keys.load_client_key(tmp_path / "keys", "sales") is None
    assert not (tmp_path / "keys").exists()
    made = e.ensure_client_key(tmp_path / "keys", "sales")
    assert ec2_keys.load_client_key(tmp_path / "keys", "sales") == made
    assert ec2_keys.load_client_key(tmp_path / "keys", "other") is None


def test_remove_client_key(tmp_path: Path) -> None:
    key = e.ensure_client_key(tmp_path, "sales")
    other = e.ensure_client_key(tmp_path, "other")
    assert ec2_keys.remove_client_key(tmp_path, "sales") == [key.path, tmp_path / "mcpctl-sales.pub"]
    assert not key.path.exists() and not (tmp_path / "mcpctl-sales.pub").exists()
    assert other.path.exists()
    assert ec2_keys.remove_client_key(tmp_path, "sales") == []
