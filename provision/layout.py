"""Where everything lives on a host under its ``remote_dir``, and the server's command line.

One place for the paths that bootstrap installs, sync fills, the client entries point at and doctor
checks: the venv's python by absolute path (no PATH, no shell profile), our state directory with the
sync manifest and the bootstrap stamp, and the data directory the server reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath, PureWindowsPath

from provision.errors import ProfileError

STATE_DIR = ".mcpctl"  # our own directory under the remote root
DATA_DIR = "data"
VENV_DIR = ".venv"
SERVER_MODULE = "mcp_sales"
# The launch command: hands the session to the host's warm server, or starts the server cold in place.
# Run with -I -S: it needs nothing but builtin modules, and starts in a few milliseconds.
ATTACH_SCRIPT = "mcp_sales/warm/attach.py"


@dataclass(frozen=True)
class RemoteLayout:
    """The paths of one project directory on a host (always POSIX, whatever the local OS)."""

    root: PurePosixPath

    @classmethod
    def of(cls, remote_dir: str) -> RemoteLayout:
        """The layout under ``remote_dir``.

        Raises:
            ProfileError: ``remote_dir`` is not an absolute POSIX path.
        """
        root = PurePosixPath(remote_dir)
        if not root.is_absolute():
            raise ProfileError(
                f"remote_dir {remote_dir!r} is not an absolute path",
                hint="set it to one such as /srv/NAME",
            )
        return cls(root)

    @property
    def state(self) -> PurePosixPath:
        return self.root / STATE_DIR

    @property
    def tools(self) -> PurePosixPath:
        return self.state / "tools"

    @property
    def tools_python(self) -> PurePosixPath:
        """The python of our private tools venv (uv is pip-installed there, never into the system)."""
        return self.tools / "bin" / "python"

    @property
    def uv(self) -> PurePosixPath:
        return self.tools / "bin" / "uv"

    @property
    def stamp(self) -> PurePosixPath:
        """What bootstrap installed (a JSON file), so a re-run can tell that nothing changed."""
        return self.state / "bootstrap.json"

    @property
    def manifest(self) -> PurePosixPath:
        """What sync last installed (a JSON file), so the next sync sends only what changed."""
        return self.state / "manifest.json"

    @property
    def venv(self) -> PurePosixPath:
        return self.root / VENV_DIR

    @property
    def python(self) -> PurePosixPath:
        return self.venv / "bin" / "python"

    @property
    def data(self) -> PurePosixPath:
        return self.root / DATA_DIR

    def data_file(self, local: str | PurePath) -> PurePosixPath:
        """Where a local data file lands on the host: ``data/BASENAME``.

        Raises:
            ProfileError: the path has no file name.
        """
        # Either flavour of separator: the profile may come from Windows, the host is always POSIX.
        name = PureWindowsPath(str(local)).name
        if name in ("", ".", ".."):
            raise ProfileError(f"the data file {str(local)!r} has no file name", hint="name a file")
        return self.data / name

    def server_argv(
        self,
        data_files: Sequence[str | PurePath] = (),
        columns: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        server_args: Sequence[str] = (),
    ) -> list[str]:
        """The server's launch command on the host: the venv's python by absolute path running the
        warm-start launcher (``-I -S .../mcp_sales/warm/attach.py``), then :meth:`server_args`.

        The launcher hands the session to the warm server (``mcp-sales warm``) or, when none is
        ready, runs ``python -m mcp_sales`` with the same arguments in its place.

        Raises:
            ProfileError: more than one data file (the server reads one), or one has no file name.
        """
        return [
            str(self.python),
            "-I",
            "-S",
            str(self.attach_script),
            *self.server_args(data_files, columns, server_args),
        ]

    @property
    def attach_script(self) -> PurePosixPath:
        """The warm-start launcher (see :meth:`server_argv`)."""
        return self.root / ATTACH_SCRIPT

    def cold_server_argv(self, *args: str) -> list[str]:
        """``python -m mcp_sales ARGS``: the server started in place, without the warm path."""
        return [str(self.python), "-m", SERVER_MODULE, *args]

    def server_args(
        self,
        data_files: Sequence[str | PurePath] = (),
        columns: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        server_args: Sequence[str] = (),
    ) -> list[str]:
        """The server's own arguments (data file, column mapping, extras): what its self-check takes too.

        Raises:
            ProfileError: more than one data file (the server reads one), or one has no file name.
        """
        if len(data_files) > 1:
            raise ProfileError(
                f"the server reads one data file but the profile lists {len(data_files)}", hint="keep one"
            )
        args: list[str] = []
        for item in data_files:
            args += ["--data", str(self.data_file(item))]
        pairs = columns.items() if isinstance(columns, Mapping) else columns
        for field, source in pairs:
            args += ["--column", f"{field}={source}"]
        return [*args, *server_args]
