"""The per-profile SSH client key: generated locally, its public half imported as an EC2 key pair.

The private key never leaves this machine: it is written once with mode 0600 (by
:func:`provision.ssh.keys.load_or_create_key`, so it is never readable by others, not even briefly) and
only its public half goes to AWS.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provision.ec2.model import TAG_PROFILE, Change, ClientKey, Ec2Spec, spec_tags, tag_value
from provision.errors import KeyFileError, McpctlError
from provision.ssh import keys as ssh_keys

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client


@dataclass
class RemoteKey:
    """The EC2 key pair named like the profile's, as AWS describes it."""

    public_blob: str | None  # the base64 part of the public key line, when AWS returns it
    fingerprint: str | None
    ours: bool  # tagged for this profile (so mcpctl may replace it)


def client_key_path(keys_dir: Path, profile: str) -> Path:
    """Where the private client key of ``profile`` lives (the public half is ``.pub`` beside it)."""
    return keys_dir / f"mcpctl-{profile}"


def ensure_client_key(keys_dir: Path, profile: str) -> ClientKey:
    """Load the profile's ed25519 client key, or generate it (private file mode 0600, dir 0700).

    Raises:
        McpctlError: the existing key file cannot be read or is not a usable private key, or the new
            one cannot be written.
    """
    existing = load_client_key(keys_dir, profile)
    if existing is not None:
        return existing  # as it is: a key put there by hand may come without its .pub
    path = client_key_path(keys_dir, profile)
    try:
        key = ssh_keys.load_or_create_key(path, f"mcpctl-{profile}", label="SSH client key")
    except KeyFileError as exc:
        raise _unusable(exc) from exc
    return ClientKey(name=f"mcpctl-{profile}", path=path, public_line=ssh_keys.public_line(key))


def load_client_key(keys_dir: Path, profile: str) -> ClientKey | None:
    """The profile's existing client key, or None if there is none yet.

    A key file that others can read is tightened to 0600 (OpenSSH refuses such private keys).

    Raises:
        McpctlError: the key file cannot be read or is not a usable private key.
    """
    path = client_key_path(keys_dir, profile)
    try:
        key = ssh_keys.load_key(path, label="SSH client key")
    except KeyFileError as exc:
        raise _unusable(exc) from exc
    if key is None:
        return None
    return ClientKey(name=f"mcpctl-{profile}", path=path, public_line=ssh_keys.public_line(key))


def _unusable(exc: KeyFileError) -> McpctlError:
    """The client key cannot be used: say so in this room's words, with what to do."""
    if exc.problem == "unreadable":
        return McpctlError(
            f"cannot read the SSH client key {exc.path}: {exc.detail}",
            hint="fix or remove the file (a new key is then generated)",
        )
    return McpctlError(
        exc.message, hint="make the keys directory writable or set MCPCTL_HOME to a writable directory"
    )


def remove_client_key(keys_dir: Path, profile: str) -> list[Path]:
    """Delete the profile's client key files; return those that existed.

    Raises:
        McpctlError: a file exists but cannot be removed.
    """
    path = client_key_path(keys_dir, profile)
    removed = []
    for p in (path, path.with_name(path.name + ".pub")):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise McpctlError(f"cannot remove {p}: {exc.strerror or exc}", hint="remove it by hand") from exc
    return removed


def find_key_pair(ec2: EC2Client, spec: Ec2Spec) -> RemoteKey | None:
    """The EC2 key pair named ``mcpctl-<profile>``, or None."""
    pairs = ec2.describe_key_pairs(
        Filters=[{"Name": "key-name", "Values": [spec.name]}], IncludePublicKey=True
    )
    remote = None
    for kp in pairs["KeyPairs"]:
        public = kp.get("PublicKey")
        remote = RemoteKey(
            public_blob=public.split()[1] if public and len(public.split()) > 1 else None,
            fingerprint=kp.get("KeyFingerprint"),
            ours=tag_value(kp.get("Tags", []), TAG_PROFILE) == spec.profile,
        )
    return remote


def ensure_key_pair(ec2: EC2Client, spec: Ec2Spec, key: ClientKey, remote: RemoteKey | None) -> Change:
    """Make the EC2 key pair hold ``key``'s public half: reuse, import, or replace an mcpctl one.

    Only call it when no instance uses the key pair (replacing it would lock that instance out).

    Returns:
        The change; action ``created`` means this call made the key pair (undo deletes it).

    Raises:
        McpctlError: a key pair of that name exists, differs, and was not created by mcpctl.
    """
    if remote is not None and same_key(remote, key):
        return Change("key-pair", "reused", spec.name)
    if remote is not None:
        if not remote.ours:
            raise McpctlError(
                f"EC2 key pair {spec.name} exists, differs from {key.path}, and was not created by mcpctl",
                hint=f"delete it (aws ec2 delete-key-pair --key-name {spec.name}) or use another profile",
            )
        # Ours, and no instance uses it (else we would be resuming): replacing it is safe.
        ec2.delete_key_pair(KeyName=spec.name)
    ec2.import_key_pair(
        KeyName=spec.name,
        PublicKeyMaterial=key.public_line.encode("ascii"),
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": spec_tags(spec)}],
    )
    return Change("key-pair", "created" if remote is None else "replaced", spec.name)


def same_key(remote: RemoteKey, key: ClientKey) -> bool:
    """Whether the EC2 key pair holds ``key``'s public half."""
    blob = key.public_line.split()[1]
    if remote.public_blob is not None:
        return remote.public_blob == blob
    # Older API answers carry only the fingerprint: EC2 uses base64(SHA-256) for imported ed25519 keys.
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")
    return (remote.fingerprint or "").removeprefix("SHA256:").rstrip("=") == digest
