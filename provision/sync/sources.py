"""What to send where: a :class:`SyncSource` is one local tree (or part of one) and its remote root.

:func:`project_sources` says what ``mcpctl sync`` sends: the project's code tree to ``remote_dir`` and
the profile's data files and directories to its data directory.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provision.errors import McpctlError
from provision.layout import DATA_DIR, RemoteLayout
from provision.sync.rules import IGNORE_FILE, literal_pattern

# The code tree the host runs from: the packages, the lock file uv installs, and the project's data.
CODE_TREE = ("/mcp_sales/", "/provision/", "/pyproject.toml", "/uv.lock", "/README.md", f"/{DATA_DIR}/")


@dataclass(frozen=True)
class SyncSource:
    """A local tree (or part of one) to mirror into an absolute remote directory.

    Attributes:
        local_root: The local directory the patterns are relative to.
        remote_root: Absolute POSIX directory on the host.
        include: gitignore-style patterns of what to send ("/pkg/" is a top-level directory, "*" is
            everything); use :func:`~provision.sync.rules.literal_pattern` for a file name.
        ignore: Extra gitignore-style patterns of what never to send (added to the built-in ones).
        ignore_file: A gitignore-syntax file in ``local_root`` with more ignore patterns, or None.
        follow_links: Send the content of file symlinks that lead outside ``local_root`` too (links
            inside it are followed unless their target is ignored; directory links never are).
    """

    local_root: Path
    remote_root: str
    include: tuple[str, ...] = ("*",)
    ignore: tuple[str, ...] = ()
    ignore_file: str | None = IGNORE_FILE
    follow_links: bool = False

    def __post_init__(self) -> None:
        root = self.remote_root
        if not root.startswith("/") or ".." in root.split("/") or "\0" in root:
            raise ValueError(f"remote_root must be an absolute POSIX path without '..', not {root!r}")
        object.__setattr__(self, "remote_root", posixpath.normpath(root))


def project_sources(
    project_root: Path, data_files: Sequence[Path], remote_dir: str, *, follow_links: bool = False
) -> list[SyncSource]:
    """Return what ``mcpctl sync`` sends: the code tree to ``remote_dir``, data files to ``remote_dir/data``.

    The code tree is ``mcp_sales/``, ``provision/``, ``pyproject.toml``, ``uv.lock``, ``README.md`` and
    the project's ``data/``. A data file goes to ``data/NAME``; a data directory to ``data/DIRNAME/``.
    A data file that is a symlink is followed wherever it leads: naming it was the user's choice.
    ``follow_links`` also follows file links out of the code tree and the data directories.

    Raises:
        McpctlError: ``project_root`` is not the mcpctl project, or a data path does not exist or is
            neither a file nor a directory.
        ProfileError: ``remote_dir`` is not an absolute path.
    """
    if not (project_root / "pyproject.toml").is_file():
        raise McpctlError(
            f"{project_root} has no pyproject.toml, so it is not the mcpctl project",
            hint="run the command from the project checkout",
        )
    data_root = str(RemoteLayout.of(remote_dir).data)
    sources = [SyncSource(project_root, remote_dir, include=CODE_TREE, follow_links=follow_links)]
    by_parent: dict[Path, list[str]] = {}
    for path in data_files:
        if path.is_dir():
            sources.append(SyncSource(path, posixpath.join(data_root, path.name), follow_links=follow_links))
        elif path.is_file():
            by_parent.setdefault(path.parent, []).append(literal_pattern(path.name))
        elif path.exists():
            raise McpctlError(
                f"the data path {path} is neither a regular file nor a directory",
                hint="name the data file itself in the profile's `data` list",
            )
        else:
            raise McpctlError(
                f"the data path {path} does not exist",
                hint="fix the profile's `data` list or create the file",
            )
    for parent, patterns in by_parent.items():
        # Only the named files are included, so following links here follows exactly those.
        sources.append(
            SyncSource(parent, data_root, include=tuple(patterns), ignore_file=None, follow_links=True)
        )
    return sources
