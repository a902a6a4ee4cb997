"""Private key files: the ed25519 keys mcpctl makes for itself, and telling an encrypted identity file.

mcpctl generates three kinds of keys, all here: the sandbox's host and client keys, and the client key
of each EC2 profile, which are files (:func:`load_or_create_key`: made once, mode 0600, with a ``.pub``
derived from the private half), and the host key an EC2 instance gets through its user-data, which
never touches the disk (:func:`generate_key`).

A user's own identity file may be encrypted; nobody is there to type its passphrase when a client
starts the server, so :func:`read_identity` reports that as :class:`KeyNeedsPassphrase` (only an
ssh-agent can use such a key), judged from the file's format rather than from asyncssh's words.
"""

from __future__ import annotations

import base64
import binascii
import struct
import sys
from pathlib import Path

import asyncssh

from provision.errors import KeyFileError, KeyNeedsPassphrase
from provision.files import atomic_write
from provision.portable import make_private

KEY_TYPE = "ssh-ed25519"
_OPENSSH_MAGIC = b"openssh-key-v1\0"
_PEM_BEGIN = "-----BEGIN "


def generate_key(comment: str) -> asyncssh.SSHKey:
    """A fresh ed25519 key whose public line ends in ``comment``."""
    return asyncssh.generate_private_key(KEY_TYPE, comment=comment)


def public_line(key: asyncssh.SSHKey) -> str:
    """The key's OpenSSH public line, ``ssh-ed25519 AAAA... comment``, without a newline."""
    return key.export_public_key("openssh").decode("ascii").strip()


def pub_path(path: Path) -> Path:
    """Where the public half of the private key file ``path`` lives: ``path`` + ``.pub``."""
    return path.with_name(path.name + ".pub")


def load_key(path: Path, *, label: str = "key") -> asyncssh.SSHKey | None:
    """Read the unencrypted private key file ``path``; None if there is no such file.

    A key file that others can read is tightened to 0600 (OpenSSH refuses to use it otherwise).

    Args:
        path: The private key file.
        label: What the key is, for messages ("sandbox key").

    Raises:
        KeyFileError: ``problem == "unreadable"``: the file cannot be read or is not a private key.
    """
    try:
        key = asyncssh.read_private_key(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # asyncssh.KeyImportError is a ValueError
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise KeyFileError(
            path, "unreadable", f"the {label} {path} is unreadable ({detail})", detail=detail
        ) from exc
    try:
        # Windows has no mode bits to read: a key we wrote there got a private access list already.
        if sys.platform != "win32" and path.stat().st_mode & 0o077:
            make_private(path)  # a private key readable by others is not private
    except OSError as exc:
        detail = exc.strerror or str(exc)
        raise KeyFileError(
            path, "unwritable", f"cannot restrict the {label} {path} to its owner: {detail}", detail=detail
        ) from exc
    return key


def load_or_create_key(
    path: Path, comment: str, *, label: str = "key", keep_pins: bool = False
) -> asyncssh.SSHKey:
    """Read the private key at ``path``, or generate it (ed25519, 0600) if it was never made.

    The ``.pub`` beside it is derived from the private key every time, so a missing or edited one
    cannot drift from it. The directory is created (0700) when missing.

    Args:
        path: The private key file.
        comment: The comment of a new key's public line.
        label: What the key is, for messages ("sandbox key").
        keep_pins: The key is pinned somewhere (a host key): a lone ``.pub`` means the key existed and
            was lost, and making a new one would break every pin of the old one without a word, so
            that is an error instead.

    Raises:
        KeyFileError: ``problem`` says which: ``"unreadable"`` (not a private key), ``"lost"`` (only
            the ``.pub`` is left, with ``keep_pins``) or ``"unwritable"``.
    """
    pub = pub_path(path)
    if keep_pins and not path.exists() and pub.exists():
        raise KeyFileError(path, "lost", f"the {label} {path} is missing but {pub.name} is there")
    key = load_key(path, label=label)
    try:
        if key is None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = generate_key(comment)
            atomic_write(path, key.export_private_key("openssh"))
        public = key.export_public_key("openssh")
        if not pub.exists() or pub.read_bytes() != public:
            atomic_write(pub, public)
    except OSError as exc:
        detail = exc.strerror or str(exc)
        raise KeyFileError(
            path, "unwritable", f"cannot write the {label} {path}: {detail}", detail=detail
        ) from exc
    return key


def read_identity(path: Path, *, profile: str = "NAME") -> asyncssh.SSHKey:
    """Read a user's private key file (a profile's ``identity_file``), which has no passphrase here.

    Args:
        path: The key file.
        profile: The profile naming it, for the message.

    Raises:
        KeyNeedsPassphrase: The file is encrypted: only an ssh-agent holding the key can use it.
        asyncssh.KeyImportError: The file is not a private key asyncssh reads.
        OSError: The file cannot be read.
    """
    try:
        return asyncssh.read_private_key(path)
    except asyncssh.KeyImportError as exc:
        if is_encrypted(path):
            raise needs_passphrase(path, profile, exc) from exc
        raise


def needs_passphrase(path: Path, profile: str, exc: BaseException) -> KeyNeedsPassphrase:
    """The error for an encrypted identity file that nobody can unlock (``exc``: asyncssh's refusal)."""
    return KeyNeedsPassphrase(
        path,
        f"cannot use the identity file {path} of profile '{profile}': {exc}",
        hint="load it into ssh-agent and set use_agent = true, or fix identity_file in the profile",
    )


def is_encrypted(path: Path) -> bool:
    """Whether the private key file ``path`` is protected by a passphrase, read from its format.

    OpenSSH keys name their cipher (``none`` when clear); PEM keys say ``ENCRYPTED PRIVATE KEY``
    (PKCS#8) or carry a ``Proc-Type: 4,ENCRYPTED`` header (PKCS#1). An unreadable file or another
    format counts as not encrypted.
    """
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    begin = text.find(_PEM_BEGIN)
    if begin < 0:
        return False
    header, _, rest = text[begin + len(_PEM_BEGIN) :].partition("-----")
    if header.strip() == "ENCRYPTED PRIVATE KEY":
        return True
    if header.strip() == "OPENSSH PRIVATE KEY":
        return _openssh_cipher(rest.split("-----END", 1)[0]) not in (None, b"none")
    body = rest.split("-----END", 1)[0]
    return any(line.strip().replace(" ", "") == "Proc-Type:4,ENCRYPTED" for line in body.splitlines())


def _openssh_cipher(body: str) -> bytes | None:
    """The cipher name in an ``openssh-key-v1`` key (its base64 body), or None if it is not one."""
    try:
        blob = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not blob.startswith(_OPENSSH_MAGIC) or len(blob) < len(_OPENSSH_MAGIC) + 4:
        return None
    (length,) = struct.unpack_from(">I", blob, len(_OPENSSH_MAGIC))
    start = len(_OPENSSH_MAGIC) + 4
    return blob[start : start + length] if start + length <= len(blob) else None


__all__ = [
    "KEY_TYPE",
    "generate_key",
    "is_encrypted",
    "load_key",
    "load_or_create_key",
    "needs_passphrase",
    "pub_path",
    "public_line",
    "read_identity",
]
