"""Process-level helpers of the warm server: what it imports before forking, its name, its threads.

What is imported (measured on the 2-core box, resident memory after each step): the MCP SDK, our
server and its pydantic models ~68 MB (1.1-1.9 s); DuckDB and pandas ~160 MB (+0.6-1.2 s); Prophet
~195 MB (+0.9-1.4 s). All of it is shared copy-on-write with every session process, and the import
time is paid once per daemon instead of at the first forecast of every session, so everything is
imported. Nothing is *built*: no DuckDB connection, no thread, no data read (a forked thread pool or
open database would be broken in the child).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path

PR_SET_NAME = 15


def set_process_name(name: str) -> None:
    """Set the kernel's name of this process (``ps -o comm``, ``pgrep NAME``; 15 bytes), Linux only.

    The warm server calls itself ``mcp-sales-warm`` so that the host's idle watchdog can tell it
    (idle, not a reason to keep the host up) from its session processes (``mcp-sales``).
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def preload(prophet: bool = True) -> list[str]:
    """Import what a session needs, without starting anything; return what was imported."""
    from mcp_sales.quiet import quiet_prophet_logger, silence_stan_loggers, stdout_to_stderr

    loaded: list[str] = []
    # Two libraries start a thread when loaded: OpenBLAS (numpy) its pool and jemalloc (pyarrow, under
    # pandas) its background purger. Both would be forked in a broken state; these settings keep
    # them from starting (read once, when each library loads: a session's environment is its own).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
    # Imports may print from C (Stan): fd 1 is /dev/null in the daemon, but be safe in tests too.
    with stdout_to_stderr():
        import anyio  # noqa: F401
        import mcp.server.stdio  # noqa: F401
        import pydantic  # noqa: F401

        import mcp_sales.__main__
        import mcp_sales.server

        loaded.append("mcp, mcp_sales.server")
        import duckdb  # noqa: F401
        import pandas  # noqa: F401

        import mcp_sales.analytics
        import mcp_sales.data

        loaded.append("duckdb, pandas")
        if prophet:
            silence_stan_loggers()
            import prophet as _prophet  # noqa: F401

            import mcp_sales.forecast  # noqa: F401

            quiet_prophet_logger()
            loaded.append("prophet")
    # Objects alive now are never freed: keep the collector from touching (and so copying) their
    # pages in every forked child.
    gc.collect()
    gc.freeze()
    return loaded


def thread_count() -> int:
    """Threads of this process, native ones included (Linux; 1 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def rss_kib(pid: int | None = None) -> int | None:
    """Resident memory of a process in KiB (Linux), or None."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
