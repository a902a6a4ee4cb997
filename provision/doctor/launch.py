"""What the MCP client starts for a profile: the command of its config entry, or mcpctl's default one.

The doctor starts exactly this (command, args and the entry's ``env``) in its spawn phase, so what
it times is what the client will run. An entry is one of three styles: mcpctl's proxy (``mcpctl
connect NAME``), an OpenSSH command line, or something else someone wrote.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from provision.clients import entries, programs
from provision.errors import ClientConfigError

PROXY_MODULE = "provision.connect"  # what runs when no mcpctl executable is found


@dataclass(frozen=True)
class Launch:
    """What the client starts for this profile."""

    command: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""  # "entry 'sales-demo'" or "the default command", for messages

    @property
    def style(self) -> Literal["proxy", "ssh", "other"]:
        """mcpctl's proxy, an OpenSSH command line, or another command."""
        name = program(self.command)
        if name == "ssh":
            return "ssh"
        if name == "mcpctl" or (self.args[:2] == ("-m", PROXY_MODULE)):
            return "proxy"
        return "other"

    def describe(self) -> str:
        """The command line, short: ``mcpctl connect demo``, or ``ssh user@host `the remote command```."""
        if self.style == "ssh":
            login = next((a for a in self.args if "@" in a and not a.startswith("-")), "?")
            return f"ssh {login} `{self.args[-1] if self.args else ''}`"
        return " ".join([program(self.command) if self.style == "proxy" else self.command, *self.args])


def program(command: str) -> str:
    """The program's name without directory or ``.exe``, lowercase: ``/opt/bin/MCPCTL.exe`` is ``mcpctl``."""
    return re.split(r"[\\/]", command)[-1].lower().removesuffix(".exe")


def ssh_port(args: Sequence[str]) -> int | None:
    """The port an OpenSSH command line connects to (``-p N`` or ``-pN``; 22 without), or None if unclear."""
    for index, arg in enumerate(args):
        if arg == "-p" and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("-p") and arg[2:].isdigit():
            value = arg[2:]
        else:
            continue
        return int(value) if value.isdigit() else None
    return 22


def default_launch(name: str) -> Launch:
    """What ``mcpctl config`` would write for profile ``name``: ``mcpctl connect NAME`` with its env."""
    args: tuple[str, ...] = ("connect", name)
    try:
        command = programs.find_mcpctl()
    except ClientConfigError:
        command, args = sys.executable, ("-m", PROXY_MODULE, name)
    # The same variables the entry would carry, so the proxy finds the same profiles.
    env = entries.proxy_entry(name, mcpctl_path=command).get("env", {})
    return Launch(command, args, env, "the default command")


__all__ = ["PROXY_MODULE", "Launch", "default_launch", "program", "ssh_port"]
