"""The facts about this computer that client config locations and entries depend on.

Passed in rather than read from globals, so tests can describe a Mac, a Windows PC or a Linux box
from any of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalSystem:
    """The computer mcpctl writes client entries for.

    Attributes:
        platform: A ``sys.platform`` value: ``darwin``, ``win32``, ``linux``...
        env: Environment variables.
        home: The user's home directory.
        executable: The Python interpreter running mcpctl (its directory holds the mcpctl script).
    """

    platform: str
    env: Mapping[str, str]
    home: Path
    executable: Path

    @classmethod
    def current(cls) -> LocalSystem:
        """Describe the computer this process runs on."""
        return cls(sys.platform, dict(os.environ), Path.home(), Path(sys.executable))

    @property
    def windows(self) -> bool:
        """Whether paths and programs follow Windows rules."""
        return self.platform == "win32"

    def getenv(self, name: str) -> str | None:
        """Return a non-empty variable (names are case-insensitive on Windows), else ``None``."""
        if self.windows:
            return next((v for k, v in self.env.items() if k.upper() == name.upper() and v), None)
        return self.env.get(name) or None
