"""The saved profiles: ``profiles/NAME.toml`` files, listed, loaded, saved (atomically) and removed."""

from __future__ import annotations

from pathlib import Path

from provision.errors import ProfileError, ProfileNotFound
from provision.files import atomic_write
from provision.profiles.dirs import known_hosts_path, profiles_dir
from provision.profiles.document import parse_profile, profile_text
from provision.profiles.model import NAME_PATTERN, Profile, check_name


def _profile_path(name: str) -> Path:
    return profiles_dir() / f"{check_name(name)}.toml"


def list_profiles() -> list[str]:
    """Return the names of all saved profiles, sorted.

    Raises:
        ProfileError: If the profiles directory cannot be created.
    """
    return sorted(p.stem for p in profiles_dir().glob("*.toml") if NAME_PATTERN.fullmatch(p.stem))


def _missing(name: str) -> ProfileNotFound:
    existing = ", ".join(list_profiles()) or "none yet"
    return ProfileNotFound(
        name, hint=f"create it with `mcpctl provision {name} --host user@host` (existing: {existing})"
    )


def load_profile(name: str) -> Profile:
    """Load ``profiles/NAME.toml``.

    Raises:
        ProfileNotFound: No such profile exists (the hint lists the existing ones).
        ProfileError: The name is invalid, or the file is malformed (the message names the file and the
            line or field).
    """
    path = _profile_path(name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _missing(name) from None
    except OSError as exc:
        raise ProfileError(
            f"cannot read {path}: {exc.strerror or exc}", hint="check its permissions"
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{path}: not UTF-8 text ({exc.reason})", hint="fix the file or remove it"
        ) from exc
    return parse_profile(text, name=name, source=path)


def save_profile(profile: Profile) -> Path:
    """Write the profile atomically (temporary file + rename), mode 0600, and return its path.

    A file that exists is updated, not rewritten: only the keys whose values changed are written, so
    the user's comments, key order and formatting survive (the file says "edit freely").

    Raises:
        ProfileError: If the file cannot be read or written.
    """
    path = _profile_path(profile.name)
    try:
        old_text: str | None = path.read_bytes().decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        old_text = None  # nothing worth keeping: write a fresh file
    except OSError as exc:
        raise ProfileError(
            f"cannot read {path}: {exc.strerror or exc}", hint="check its permissions"
        ) from exc
    try:
        atomic_write(path, profile_text(profile, old_text).encode("utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot write {path}: {exc.strerror or exc}", hint="check the directory") from exc
    return path


def remove_profile(name: str, *, missing_ok: bool = False) -> None:
    """Delete the profile and its known_hosts file.

    Raises:
        ProfileNotFound: Neither exists (unless ``missing_ok``).
        ProfileError: A file cannot be removed.
    """
    removed = False
    for path in (_profile_path(name), known_hosts_path(name)):
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ProfileError(
                f"cannot remove {path}: {exc.strerror or exc}", hint="remove it by hand"
            ) from exc
    if not removed and not missing_ok:
        raise _missing(name)
