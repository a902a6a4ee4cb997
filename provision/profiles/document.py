"""A profile's TOML text: read with the file, line and field in every error, written back in place.

The file says "edit freely", so writing a profile back (``mcpctl start`` recording a new address, the
sandbox moving its port) changes only the keys whose values changed: the user's comments, key order and
formatting stay. A file that is not TOML (or none) is written anew, with a header comment.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table

from provision.errors import ProfileError
from provision.profiles.model import Profile, describe_validation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


def parse_profile(text: str, *, name: str, source: Path) -> Profile:
    """Parse a profile from TOML text; ``source`` names the file in error messages.

    Raises:
        ProfileError: On a TOML syntax error (with its line) or an invalid field (with its name).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: invalid TOML: {exc}", hint="fix the file or remove it") from exc
    data.setdefault("name", name)
    if data["name"] != name:
        raise ProfileError(
            f"{source}: field 'name': {data['name']!r} does not match the file name",
            hint=f"set it to '{name}' or rename the file",
        )
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{source}: {describe_validation(exc)}", hint="fix the file or remove it") from exc


def profile_text(profile: Profile, old_text: str | None = None) -> str:
    """The TOML text of ``profile``: ``old_text`` with only what changed rewritten, or a fresh file.

    Text that is not TOML (or none) gives a fresh file with the header comment.
    """
    if old_text is not None:
        try:
            document = tomlkit.parse(old_text)
        except TOMLKitError:
            return profile.to_toml()
        _update_table(document, _saved_values(document, profile.name), _values(profile))
        return document.as_string()
    return profile.to_toml()


def _values(profile: Profile) -> dict[str, Any]:
    """The profile as TOML values (``None`` left out: TOML has no null)."""
    return profile.model_dump(mode="json", exclude_none=True)


def _saved_values(document: tomlkit.TOMLDocument, name: str) -> dict[str, Any]:
    """What the document means as a profile (defaults filled in), or {} when it is not a valid one.

    Comparing meanings, not text, leaves a value alone that the user wrote differently (``~/key`` for
    ``/home/ann/key``, a remote_dir left to its default).
    """
    values = {"name": name, **document.unwrap()}
    try:
        return _values(Profile.model_validate(values))
    except ValidationError:
        return {}  # not a profile we can read: every key is written anew


def _update_table(table: Any, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Set in ``table`` (a tomlkit container) each key whose value differs between ``old`` and ``new``.

    Keys that ``new`` does not have (a value that became ``None``, a key the model does not know) are
    removed; a nested table is updated key by key so that its own comments stay too.
    """
    for key, value in new.items():
        if key in old and old[key] == value:
            continue
        current = table.get(key)
        if isinstance(value, dict) and isinstance(current, Table):
            previous = old.get(key)
            _update_table(current, previous if isinstance(previous, dict) else {}, value)
        else:
            table[key] = value
    for key in [k for k in table if k not in new]:
        del table[key]
