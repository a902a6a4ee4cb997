"""Whether the data is ready, for ``GET /health`` (no auth: what a load balancer polls) and ``/info``.

A check is a stat of the data file when nothing changed, and a conversion when it did, so it runs in
a worker thread in the background: ``/health`` waits briefly for a check it started and otherwise
answers with the last known state. It never blocks the event loop, whatever the tools are doing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc
import anyio.to_thread

from mcp_sales.errors import SalesError
from mcp_sales.server import ServerConfig, open_store

if TYPE_CHECKING:
    from mcp_sales.data import SalesStore

log = logging.getLogger(__name__)

# How long /health waits for the check it started before answering with the last known state.
CHECK_WAIT_S = 0.5
# A successful check younger than this is answered as is: a load balancer (or a benchmark) polling
# /health many times a second costs no thread hop, and a changed file is still seen within a second.
FRESH_S = 1.0

Status = Literal["ok", "starting", "unavailable"]


@dataclass(frozen=True)
class DataState:
    status: Status
    data_version: str | None = None
    error: str | None = None

    def body(self) -> dict[str, str | None]:
        """What ``/health`` shows anyone: no paths or file contents, which ``/info`` (with a key) has."""
        if self.status == "ok":
            return {"status": "ok", "data_version": self.data_version}
        if self.status == "starting":
            return {"status": "starting", "error": self.error}
        return {"status": self.status, "error": UNAVAILABLE}


UNAVAILABLE = "the data cannot be used; GET /info (with a key) or the server log says why and what to fix"
STARTING = DataState("starting", error="the data is being prepared (first conversion); retry shortly")


class DataHealth:
    """The data's state, refreshed in the background (at most one check at a time)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.state = STARTING
        self._store: SalesStore | None = None
        self._done: anyio.Event | None = None  # set when the check in flight ends; None when idle
        self._limiter = anyio.CapacityLimiter(1)  # never competes with tool calls for a thread
        self._group: anyio.abc.TaskGroup | None = None
        self._checked_at = float("-inf")  # time.monotonic() of the last finished check

    def attach(self, group: anyio.abc.TaskGroup) -> None:
        """Run checks in ``group`` (the app's lifespan) and start the first one now."""
        self._group = group
        self.kick()

    def _check(self) -> DataState:
        try:
            if self._store is None:
                self._store = open_store(self.config)
            return DataState("ok", data_version=self._store.current().version)
        except SalesError as exc:
            return DataState("unavailable", error=str(exc))
        except Exception:
            log.exception("checking the data failed")
            return DataState("unavailable", error="checking the data failed; the server log has the cause")

    async def _run_check(self, done: anyio.Event) -> None:
        try:
            state = await anyio.to_thread.run_sync(self._check, limiter=self._limiter, abandon_on_cancel=True)
            if state != self.state:
                log.info("data %s%s", state.status, f": {state.error}" if state.error else "")
            self.state = state
            self._checked_at = time.monotonic()
        finally:
            self._done = None
            done.set()

    def kick(self) -> anyio.Event:
        """Start a check unless one is running; the event is set when the running one ends."""
        if self._done is None:
            self._done = done = anyio.Event()
            assert self._group is not None
            self._group.start_soon(self._run_check, done)
        return self._done

    async def current(self, wait_s: float = CHECK_WAIT_S) -> DataState:
        """The state after a fresh check, or the last known one if the check takes longer than ``wait_s``."""
        if self._group is None:  # an app driven without its lifespan: check inline
            if self._done is None:
                done = self._done = anyio.Event()
                await self._run_check(done)
            return self.state
        if self.state.status == "ok" and time.monotonic() - self._checked_at < FRESH_S:
            return self.state  # (a server that is not ok is checked on every poll: it recovers at once)
        done = self.kick()
        with anyio.move_on_after(wait_s):
            await done.wait()
        return self.state
