"""keys.py: mcpctl's own ed25519 key files (made once, 0600, reused, never silently replaced) and telling
an encrypted identity file by its format."""

from __future__ import annotations

import base64
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import asyncssh
import pytest

from provision.errors import KeyFileError, KeyNeedsPassphrase
from provision.ssh import keys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------- load or create


def test_a_new_key_is_ed25519_private_and_has_its_pub(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "client"
    key = keys.load_or_create_key(path, "mcpctl-demo")
    assert key.algorithm == b"ssh-ed25519"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert _mode(keys.pub_path(path)) == 0o600
    assert keys.pub_path(path).read_text() == keys.public_line(key) + "\n"
    assert keys.public_line(key).startswith("ssh-ed25519 ") and keys.public_line(key).endswith(" mcpctl-demo")
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_an_existing_key_is_reused_and_tightened(tmp_path: Path) -> None:
    path = tmp_path / "client"
    first = keys.load_or_create_key(path, "mcpctl-demo")
    saved = path.read_bytes()
    path.chmod(0o644)
    again = keys.load_or_create_key(path, "another comment")
    assert keys.public_line(again) == keys.public_line(first)
    assert path.read_bytes() == saved
    assert _mode(path) == 0o600  # OpenSSH refuses a private key that others can read


def test_the_pub_is_derived_from_the_private_key_every_time(tmp_path: Path) -> None:
    path = tmp_path / "client"
    key = keys.load_or_create_key(path, "mcpctl-demo")
    keys.pub_path(path).write_text("ssh-ed25519 AAAAedited\n")
    keys.load_or_create_key(path, "mcpctl-demo")
    assert keys.pub_path(path).read_text() == keys.public_line(key) + "\n"
    keys.pub_path(path).unlink()
    keys.load_or_create_key(path, "mcpctl-demo")
    assert keys.pub_path(path).read_text() == keys.public_line(key) + "\n"


def test_a_corrupt_key_is_a_clear_error_and_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "host_key"
    path.write_text("not a key\n")
    with pytest.raises(KeyFileError) as info:
        keys.load_or_create_key(path, "mcpctl-demo", label="sandbox key")
    assert (info.value.problem, info.value.path) == ("unreadable", path)
    assert info.value.message.startswith(f"the sandbox key {path} is unreadable (")
    assert info.value.detail
    assert path.read_text() == "not a key\n"
    assert not keys.pub_path(path).exists()


def test_a_lost_pinned_key_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "host_key"
    keys.load_or_create_key(path, "mcpctl-demo")
    path.unlink()
    with pytest.raises(KeyFileError) as info:
        keys.load_or_create_key(path, "mcpctl-demo", keep_pins=True)
    assert info.value.problem == "lost"
    assert "host_key.pub is there" in info.value.message
    assert not path.exists()
    # Without pins to keep, a lone .pub is simply replaced along with a new key.
    key = keys.load_or_create_key(path, "mcpctl-demo")
    assert keys.pub_path(path).read_text() == keys.public_line(key) + "\n"


def test_a_key_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    path = tmp_path / "client"
    keys.pub_path(path).mkdir()  # in the way of the .pub, even for root
    with pytest.raises(KeyFileError) as info:
        keys.load_or_create_key(path, "mcpctl-demo", label="SSH client key")
    assert info.value.problem == "unwritable"
    assert info.value.message.startswith(f"cannot write the SSH client key {path}: ")


def test_load_key_is_none_without_a_file(tmp_path: Path) -> None:
    assert keys.load_key(tmp_path / "nothing") is None


def test_generated_keys_differ_and_carry_their_comment() -> None:
    one, two = keys.generate_key("mcpctl-host"), keys.generate_key("mcpctl-host")
    assert keys.public_line(one) != keys.public_line(two)
    assert keys.public_line(one).split()[::2] == ["ssh-ed25519", "mcpctl-host"]


# ------------------------------------------------------------------------------------ encrypted files


def _openssh_encrypted(path: Path) -> Path:
    """An ``openssh-key-v1`` file that names a cipher, as ``ssh-keygen -N PASSPHRASE`` writes it.

    Built by hand: writing a real one needs bcrypt, which asyncssh does not require.
    """

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    public = asyncssh.generate_private_key("ssh-ed25519").public_data
    blob = (
        b"openssh-key-v1\0"
        + string(b"aes256-ctr")
        + string(b"bcrypt")
        + string(string(b"0123456789abcdef") + struct.pack(">I", 16))
        + struct.pack(">I", 1)
        + string(public)
        + string(bytes(64))
    )
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    path.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    return path


def _written(path: Path, key: asyncssh.SSHKey, format_name: str, passphrase: str | None = None) -> Path:
    key.write_private_key(path, format_name=format_name, passphrase=passphrase)
    return path


def test_encryption_is_read_from_the_format(tmp_path: Path) -> None:
    ed25519, rsa = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-rsa")
    assert keys.is_encrypted(_openssh_encrypted(tmp_path / "openssh-locked"))
    assert keys.is_encrypted(_written(tmp_path / "pkcs8-locked", ed25519, "pkcs8-pem", "pw"))
    assert keys.is_encrypted(_written(tmp_path / "pkcs1-locked", rsa, "pkcs1-pem", "pw"))
    assert not keys.is_encrypted(_written(tmp_path / "openssh", ed25519, "openssh"))
    assert not keys.is_encrypted(_written(tmp_path / "pkcs8", ed25519, "pkcs8-pem"))
    assert not keys.is_encrypted(_written(tmp_path / "pkcs1", rsa, "pkcs1-pem"))
    (tmp_path / "garbage").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n")
    assert not keys.is_encrypted(tmp_path / "garbage")
    assert not keys.is_encrypted(tmp_path / "missing")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_a_key_locked_by_ssh_keygen_is_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(path)], check=True)
    assert keys.is_encrypted(path)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "clear")], check=True)
    assert not keys.is_encrypted(tmp_path / "clear")


def test_read_identity_tells_an_encrypted_key_by_its_class(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    clear = _written(tmp_path / "clear", key, "openssh")
    assert keys.read_identity(clear).public_data == key.public_data
    locked = _openssh_encrypted(tmp_path / "locked")
    with pytest.raises(KeyNeedsPassphrase) as info:
        keys.read_identity(locked, profile="demo")
    assert info.value.path == locked
    assert info.value.message.startswith(f"cannot use the identity file {locked} of profile 'demo': ")
    (tmp_path / "garbage").write_text("not a key\n")
    with pytest.raises(asyncssh.KeyImportError):
        keys.read_identity(tmp_path / "garbage")
