"""Replace the host's warm server after a sync or provision that changed code or dependencies.

The warm server (``mcp-sales warm``, see docs/WARM.md) would notice outdated code by itself at the
next session, which would then start cold. Replacing it right after the change makes the next
session warm already, on the new code. A data change needs nothing: the server reads data per call.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from provision.errors import McpctlError
from provision.layout import RemoteLayout

if TYPE_CHECKING:
    from provision.ssh.remote import Remote
    from provision.sync.report import SyncReport

RESTART_TIMEOUT = 30.0


def code_changed(report: SyncReport, remote_dir: str) -> bool:
    """Whether the sync wrote or deleted anything the server runs (anything but the data directory)."""
    layout = RemoteLayout.of(remote_dir)
    data = str(layout.data)
    for plan in report.plans:
        paths = [u.path for u in plan.uploads] + list(plan.deletes)
        for path in paths:
            full = posixpath.normpath(posixpath.join(plan.remote_root, path))
            if full != data and not full.startswith(data + "/"):
                return True
    return False


async def replace_warm_server(remote: Remote, remote_dir: str) -> str:
    """Stop the host's warm server for ``remote_dir`` (its sessions finish) and start a fresh one.

    With none running, nothing is started: the next session starts one.

    Never fails the caller: the warm server is an optimisation, and a launch without one starts cold.

    Returns:
        What happened, in a few words.
    """
    layout = RemoteLayout.of(remote_dir)
    argv = [str(layout.python), "-I", "-S", str(layout.attach_script), "--restart"]
    try:
        result = await remote.run(argv, check=False, timeout=RESTART_TIMEOUT)
    except McpctlError as exc:
        return f"not replaced: {exc}"
    answer = result.stdout.strip().splitlines()[-1:] or [""]
    if result.exit_status == 0 and answer[0] == "started":
        return "replaced: a fresh warm server is starting"
    if result.exit_status == 0 and answer[0] == "none":
        return "none ran (the next session starts one)"
    return f"not replaced ({(result.stderr.strip() or answer[0] or 'no answer')[:200]})"


__all__ = ["code_changed", "replace_warm_server"]
