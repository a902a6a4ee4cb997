"""The warm-start phase: did the host's warm server serve the session the doctor just ran, and at what cost.

The launch command on the host records how each session started (``last-session`` next to the warm
server's socket, see docs/WARM.md); the doctor reads it, and the warm server's state, with the
launcher's ``--status`` over a second short SSH session. A cold start is no fault (the first session
after a change starts cold and starts the warm server); a host without the launcher needs a sync.
"""

from __future__ import annotations

import time

from provision.doctor.context import Diagnosis, since
from provision.doctor.report import Check, clip
from provision.errors import McpctlError
from provision.layout import RemoteLayout
from provision.ssh.remote import open_remote

PHASE = "warm start"
_STATUS_TIMEOUT = 20.0


def describe_status(output: str) -> str | None:
    """One sentence from the launcher's ``--status`` output, or None when it is not that output."""
    lines = dict(line.partition(" ")[::2] for line in output.splitlines() if " " in line)
    server_line = next(
        (line for line in output.splitlines() if line.split(" ", 1)[0] in ("ready", "retiring", "none")), None
    )
    if "disk" not in lines or "last" not in lines or server_line is None:
        return None
    last = lines["last"].split(" ", 1)  # "TIMESTAMP warm pid N (...)" / "TIMESTAMP cold REASON (...)"
    how = last[1] if len(last) == 2 else "no session recorded"
    words = server_line.split()
    if words[0] == "ready" and "pid" in words:
        fields = dict(zip(words[1::2], words[2::2], strict=False))
        server = (
            f"the warm server (pid {fields.get('pid', '?')}, {int(fields.get('rss_kib', '0')) // 1024} MiB, "
            f"{fields.get('served', '?')} sessions served) is ready"
        )
    else:
        server = "no warm server is ready yet" if words[0] == "none" else "the warm server is being replaced"
    if how.startswith("warm "):
        return f"warm: forked by the host's warm server, {how.removeprefix('warm ')}; {server}"
    if how.startswith("cold "):
        return f"cold: {how.removeprefix('cold ')}; {server}"
    return f"{how}; {server}"


async def check_warm(dx: Diagnosis) -> None:
    """Report how the host started the session the earlier phases ran."""
    assert dx.launch is not None and dx.target is not None and dx.profile is not None
    started = time.perf_counter()
    if dx.launch.style == "other":
        dx.add(Check(PHASE, True, 0.0, "not checked: the entry starts a command of its own"))
        return
    layout = RemoteLayout.of(dx.profile.remote_dir)
    argv = [str(layout.python), "-I", "-S", str(layout.attach_script), "--status"]
    try:
        remote = await open_remote(dx.target)
        try:
            result = await remote.run(argv, check=False, timeout=_STATUS_TIMEOUT)
        finally:
            await remote.aclose()
    except McpctlError as exc:
        dx.add(
            Check(
                PHASE,
                True,
                since(started),
                f"not checked: {exc.message}",
                f"`mcpctl doctor {dx.name}` again checks it once the host answers.",
                warning=True,
            )
        )
        return
    detail = describe_status(result.stdout) if result.exit_status == 0 else None
    if detail is None:
        said = clip(result.stderr.strip() or result.stdout.strip())
        dx.add(
            Check(
                PHASE,
                True,
                since(started),
                f"the host has no warm-start launcher ({said})",
                f"`mcpctl sync {dx.name}` installs it; every session starts cold until then.",
                warning=True,
            )
        )
        return
    dx.add(Check(PHASE, True, since(started), detail))


__all__ = ["PHASE", "check_warm", "describe_status"]
