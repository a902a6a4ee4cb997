"""errors.py: one sentence per error ("message; hint"), and fields to branch on instead of words."""

from __future__ import annotations

import pytest

from provision.errors import McpctlError, ProfileError, ProfileNotFound


def test_an_error_with_a_hint_reads_message_then_hint() -> None:
    error = McpctlError("the host runs Darwin, not Linux", hint="mcpctl installs only on Linux hosts")
    assert str(error) == "the host runs Darwin, not Linux; mcpctl installs only on Linux hosts"
    assert (error.message, error.hint) == (
        "the host runs Darwin, not Linux",
        "mcpctl installs only on Linux hosts",
    )


def test_an_error_without_a_hint_is_its_message() -> None:
    error = ProfileError("profile 'web' has no host address yet")
    assert str(error) == error.message and error.hint is None
    assert error.exit_code == 2


def test_a_missing_profile_carries_its_name() -> None:
    error = ProfileNotFound("web", hint="create it with `mcpctl provision web --host user@host`")
    assert error.name == "web"
    assert str(error) == "no profile named 'web'; create it with `mcpctl provision web --host user@host`"
    with pytest.raises(ProfileError):  # still a profile error, with the profile error's exit code
        raise error
    assert error.exit_code == ProfileError.exit_code
