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
import copy
import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    with stdout_to_stderr():
        cache_tool_metadata()
        warm_session_start()
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


def cache_tool_metadata() -> None:
    """Make building the server in a session cost next to nothing.

    Registering a tool derives a pydantic model and a JSON schema from its signature (most of the
    server's build: ~50 ms here, several times that on a busy host). The functions a session
    registers are closures of the same definitions each time, so what the SDK derives from them is
    the same: remember it per code object and annotations, and build one server here to fill it.
    The derived values hold nothing of the function itself (the SDK keeps the function apart).
    """
    from mcp.server.mcpserver.tools import base

    from mcp_sales.__main__ import DEFAULT_DATA
    from mcp_sales.server import ServerConfig, build_server

    derive: Callable[..., Any] = getattr(base, "func_metadata")  # noqa: B009 - not re-exported
    remembered: dict[tuple[Any, ...], Any] = {}

    def func_metadata(
        func: Callable[..., Any], skip_names: Sequence[str] = (), structured_output: bool | None = None
    ) -> Any:
        code = getattr(func, "__code__", None)
        if code is None:
            return derive(func, skip_names=skip_names, structured_output=structured_output)
        key = (code, tuple(skip_names), structured_output, repr(getattr(func, "__annotations__", None)))
        if key not in remembered:
            meta = derive(func, skip_names=skip_names, structured_output=structured_output)
            _remember_schema(meta.arg_model)
            remembered[key] = meta
        return remembered[key]

    setattr(base, "func_metadata", func_metadata)  # noqa: B010 - the name base.py calls
    build_server(ServerConfig(data_path=DEFAULT_DATA))


def warm_session_start() -> None:
    """Do once here the first-use work every session would repeat between fork and ``initialize``.

    Measured in a session on the 2-core box: the first ``anyio.run`` imports anyio's asyncio backend
    (~14 ms idle, 40+ ms under load), the first argument parse imports the HTTP options (~2 ms), and
    the first JSON-RPC message builds pydantic's validators lazily. Nothing started here outlives the
    call: the event loop is closed again and no thread is started (a forked thread would be broken).
    """
    import anyio
    from mcp import types

    from mcp_sales.__main__ import parse_args

    parse_args(["serve"])

    async def _nothing() -> None:
        await anyio.lowlevel.checkpoint()

    anyio.run(_nothing)
    sample = (
        b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
        b'"capabilities":{},"clientInfo":{"name":"warm","version":"0"}}}'
    )
    message = types.jsonrpc_message_adapter.validate_json(sample, by_name=False)
    message.model_dump_json(by_alias=True, exclude_unset=True)


def _remember_schema(model: Any) -> None:
    """Give a derived argument model a memo of its JSON schema (a copy each time: callers may edit it)."""
    derive = model.model_json_schema
    schemas: dict[tuple[Any, ...], Any] = {}

    def model_json_schema(*args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in schemas:
            schemas[key] = derive(*args, **kwargs)
        return copy.deepcopy(schemas[key])

    with contextlib.suppress(AttributeError, TypeError):
        model.model_json_schema = model_json_schema
