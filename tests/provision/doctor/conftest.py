"""A :class:`~provision.doctor.context.Diagnosis` as the phases before the one under test leave it.

``diagnosis(**fields)`` builds one for profile 'demo' on ``h.example:2222`` (remote_dir ``/srv/demo``),
with its checks recorded in ``seen``; pass ``profile``/``target`` field overrides as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provision.doctor.context import Diagnosis
from provision.profiles import Profile
from provision.ssh.target import Target

MakeDiagnosis = Callable[..., Diagnosis]


@pytest.fixture
def diagnosis(tmp_path: Path) -> MakeDiagnosis:
    def make(*, kind: str = "host", target: dict[str, Any] | None = None, **fields: Any) -> Diagnosis:
        profile = Profile(
            name="demo", kind=kind, host="h.example", port=2222, user="u", remote_dir="/srv/demo"
        )
        values: dict[str, Any] = {
            "host": "h.example",
            "port": 2222,
            "user": "u",
            "known_hosts": tmp_path / "known_hosts",
            "name": "demo",
            **(target or {}),
        }
        dx = Diagnosis("demo", "claude", None, None, 5.0, profile=profile, target=Target(**values))
        for name, value in fields.items():
            setattr(dx, name, value)
        return dx

    return make
