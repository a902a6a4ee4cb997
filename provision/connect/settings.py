"""The proxy's tunables, and the reconnect policy built on them: how long to back off, when to give up."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from provision.errors import McpctlError, ProfileError, RemoteError

EXIT_UNEXPECTED = 70  # the exit code for an unexpected failure (what the CLI uses too)
GIVE_UP_ENV = "MCPCTL_CONNECT_GIVE_UP"
LOOP_ENV = "MCPCTL_CONNECT_LOOP"  # "uvloop" (the default where installed) or "asyncio"
LOOPS = ("uvloop", "asyncio")


@dataclass(frozen=True)
class ProxySettings:
    """Tunables of the proxy; the defaults suit Claude Desktop (60 s to answer ``initialize``)."""

    give_up_after: float = 120.0  # seconds without a working server before giving up
    # Before the first server ever answered: MCP clients such as Claude Desktop abandon an unanswered
    # initialize after 60 s, so the proxy gives up sooner and answers it with the reason.
    startup_give_up_after: float = 50.0
    backoff_initial: float = 0.2  # first reconnect delay; doubles per failed attempt
    backoff_max: float = 5.0
    queue_limit: int = 256  # messages waiting for a server
    start_failures: int = 3  # consecutive servers dying at start before giving up
    exit_grace: float = 1.0  # seconds the server gets to exit after its stdin closes
    replay_timeout: float = 30.0  # seconds a fresh server gets to answer the replayed initialize
    max_line: int = 64 * 1024 * 1024  # longest message accepted in either direction
    # The event loop: uvloop relays each message with less CPU than asyncio's own loop
    # (docs/BENCHMARKS.md); asyncio where uvloop is missing (Windows has none).
    loop: str = "uvloop"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProxySettings:
        """Defaults, with ``give_up_after`` from ``$MCPCTL_CONNECT_GIVE_UP`` and ``loop`` from
        ``$MCPCTL_CONNECT_LOOP`` if set.

        Raises:
            ProfileError: A variable has a value it cannot take.
        """
        loop = environ.get(LOOP_ENV, "").strip().lower() or cls.loop
        if loop not in LOOPS:
            raise ProfileError(
                f"{LOOP_ENV}={loop!r} is not one of {', '.join(LOOPS)}",
                hint="fix or remove it in the environment the MCP client passes "
                "(the `env` of its server entry)",
            )
        value = environ.get(GIVE_UP_ENV, "").strip()
        if not value:
            return cls(loop=loop)
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ProfileError(
                f"{GIVE_UP_ENV}={value!r} is not a number of seconds greater than 0",
                hint="fix or remove it in the environment the MCP client passes "
                "(the `env` of its server entry)",
            )
        return cls(give_up_after=seconds, loop=loop)

    def backoff(self, attempt: int) -> float:
        """The delay before reconnect attempt ``attempt`` (0-based), with jitter.

        The jitter keeps the two proxies some clients start for one server from retrying in lockstep.
        """
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt, 32))
        return base * random.uniform(0.5, 1.0)


@dataclass
class Outage:
    """The client's time without a working server, and whether waiting longer can still help.

    It starts when the proxy starts and again whenever a server that worked goes away; it ends the
    proxy once it lasts ``give_up_after`` (``startup_give_up_after`` before any server answered), or
    once ``start_failures`` servers in a row died right after starting.
    """

    settings: ProxySettings
    since: float = field(default_factory=time.monotonic)
    attempt: int = 0  # reconnect attempts since the outage began
    failures: int = 0  # consecutive servers that died at start
    error: McpctlError | None = None  # the last reason there was no server
    served: bool = False  # whether any server has answered yet

    def start_failed(self, error: McpctlError) -> None:
        """A server could not be started, or died before answering anything."""
        self.error = error
        self.failures += isinstance(error, RemoteError)

    def link_ended(self, *, healthy: bool, failure: McpctlError | None) -> None:
        """A server went away; ``failure`` is what it was if it never got going."""
        self.served = self.served or healthy
        if failure is not None:
            self.start_failed(failure)
            return
        self.since, self.attempt, self.failures, self.error = time.monotonic(), 0, 0, None

    def hopeless(self) -> bool:
        """Whether to stop trying."""
        limit = self.settings.give_up_after
        if not self.served:
            limit = min(limit, self.settings.startup_give_up_after)
        return self.failures >= self.settings.start_failures or time.monotonic() - self.since >= limit

    def next_delay(self) -> float:
        """The (jittered) delay before the next attempt; counts the attempt."""
        delay = self.settings.backoff(self.attempt)
        self.attempt += 1
        return delay


__all__ = ["EXIT_UNEXPECTED", "GIVE_UP_ENV", "LOOPS", "LOOP_ENV", "Outage", "ProxySettings"]
