"""Write or remove mcpctl's entry in a client's config file: the glue of locations, entries and edits.

One function per direction, for both clients: Claude Desktop and the Gemini CLI differ only in where
their file is (:mod:`provision.clients.locations`) and in the app's name in messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from provision.clients.entries import EntryInputs, Style, build_entry, default_server_name, is_mcpctl_entry
from provision.clients.jsonedit import ConfigChange, remove_server, set_server
from provision.clients.locations import Client, app_name, chosen_config_path
from provision.clients.system import LocalSystem
from provision.errors import ClientConfigError


def configure_client(
    inputs: EntryInputs,
    *,
    client: Client = "claude",
    style: Style = "proxy",
    server_name: str | None = None,
    path: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    system: LocalSystem | None = None,
    now: datetime | None = None,
) -> ConfigChange:
    """Write (or, with ``dry_run``, preview) our entry in the client's config file.

    Args:
        inputs: Values from the profile.
        client: ``claude`` (Claude Desktop) or ``gemini`` (Gemini CLI, user settings).
        style: ``proxy`` (``mcpctl connect``) or ``ssh`` (the OpenSSH client).
        server_name: The entry's key; default ``sales-NAME``.
        path: Use this file instead of the client's usual one (``--config-path``).
        force: Replace an entry of that name even if it is not ours.
        dry_run: Write nothing; the result carries the diff and the new text.
        system: The local computer's facts (default: this one).
        now: Time stamp for the backup's name.

    Raises:
        ClientConfigError: The file is invalid or read-only (left untouched), the name is taken, the
            file kept changing while it was edited, or writing failed.
        ProfileError: The profile cannot be expressed as an entry of this style.
    """
    system = system or LocalSystem.current()
    target = chosen_config_path(path, client, system)
    entry = build_entry(inputs, style, system)
    name = _check_server_name(server_name or default_server_name(inputs.name))
    return set_our_entry(target, name, entry, client=client, force=force, dry_run=dry_run, now=now)


def set_our_entry(
    target: Path,
    name: str,
    entry: Mapping[str, Any],
    *,
    client: Client,
    force: bool,
    dry_run: bool,
    now: datetime | None,
) -> ConfigChange:
    """Write (or preview) ``entry`` as server ``name`` in ``client``'s config file ``target``.

    An entry of that name that mcpctl did not write is replaced only with ``force``.

    Raises:
        ClientConfigError: As :func:`provision.clients.jsonedit.set_server` reports it.
    """
    return set_server(
        target,
        name,
        entry,
        is_ours=is_mcpctl_entry,
        force=force,
        dry_run=dry_run,
        now=now,
        app=app_name(client),
    )


def remove_client_entry(
    profile_name: str,
    *,
    client: Client = "claude",
    server_name: str | None = None,
    path: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    system: LocalSystem | None = None,
    now: datetime | None = None,
) -> ConfigChange:
    """Remove our entry (only it) from the client's config file; ``absent`` if there is none.

    Raises:
        ClientConfigError: The file is invalid or read-only (left untouched), the entry is not ours, the
            file kept changing while it was edited, or writing failed.
    """
    system = system or LocalSystem.current()
    target = chosen_config_path(path, client, system)
    name = _check_server_name(server_name or default_server_name(profile_name))
    return remove_server(
        target, name, is_ours=is_mcpctl_entry, force=force, dry_run=dry_run, now=now, app=app_name(client)
    )


def _check_server_name(name: str) -> str:
    if not name.strip() or any(ord(c) < 32 for c in name):
        raise ClientConfigError(
            f"{name!r} is not usable as a server name", hint="choose a visible, non-empty name"
        )
    return name
