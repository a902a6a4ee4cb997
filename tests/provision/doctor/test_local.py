"""The key file phase on real key files: usable, readable by others, encrypted, not a key."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from provision.doctor.context import HardFailure
from provision.doctor.local import check_key_file

from .conftest import MakeDiagnosis


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_test"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(path))
    path.chmod(0o600)
    return path


def test_a_private_key_only_we_can_read_passes(diagnosis: MakeDiagnosis, key: Path) -> None:
    dx = diagnosis(target={"identity_file": key})
    check_key_file(dx)
    assert dx.checks[-1].ok and "ssh-ed25519 private key, mode 0600" in dx.checks[-1].detail


def test_a_key_others_can_read_is_flagged_and_the_run_goes_on(diagnosis: MakeDiagnosis, key: Path) -> None:
    key.chmod(0o644)
    dx = diagnosis(target={"identity_file": key})
    check_key_file(dx)
    assert not dx.checks[-1].ok and dx.checks[-1].fix == f"run `chmod 600 {key}`."


@pytest.mark.parametrize("use_agent", [False, True])
def test_an_encrypted_key_needs_the_agent(diagnosis: MakeDiagnosis, key: Path, use_agent: bool) -> None:
    asyncssh.read_private_key(str(key)).write_private_key(str(key), format_name="pkcs8-pem", passphrase="s")
    dx = diagnosis(target={"identity_file": key, "use_agent": use_agent})
    if use_agent:
        check_key_file(dx)
        assert dx.checks[-1].ok and "encrypted (the ssh-agent signs)" in dx.checks[-1].detail
        return
    with pytest.raises(HardFailure):
        check_key_file(dx)
    assert "nobody can type its passphrase" in dx.checks[-1].detail
    assert dx.checks[-1].fix == f"load it with `ssh-add {key}` and set use_agent = true in profile 'demo'."


def test_a_file_that_is_no_key_says_so(diagnosis: MakeDiagnosis, tmp_path: Path) -> None:
    public = tmp_path / "id_test.pub"
    public.write_text(asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode())
    dx = diagnosis(target={"identity_file": public})
    with pytest.raises(HardFailure):
        check_key_file(dx)
    assert "is not a private key" in dx.checks[-1].detail
    assert (dx.checks[-1].fix or "").endswith("(the file without .pub).")
