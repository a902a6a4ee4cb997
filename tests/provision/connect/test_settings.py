"""The proxy's tunables and its reconnect policy: back off, give up."""

from __future__ import annotations

from typing import Any

import pytest

from provision.connect.settings import GIVE_UP_ENV, LOOP_ENV, Outage, ProxySettings
from provision.errors import ConnectError, McpctlError, ProfileError, RemoteError


def test_settings_read_the_give_up_time_from_the_environment() -> None:
    assert ProxySettings.from_env({}).give_up_after == ProxySettings().give_up_after
    assert ProxySettings.from_env({GIVE_UP_ENV: "7.5"}).give_up_after == 7.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ProfileError, match=GIVE_UP_ENV):
            ProxySettings.from_env({GIVE_UP_ENV: bad})
    settings = ProxySettings(backoff_initial=0.2, backoff_max=5.0)
    assert 0.1 <= settings.backoff(0) <= 0.2
    assert 2.5 <= settings.backoff(40) <= 5.0


def test_settings_read_the_event_loop_from_the_environment() -> None:
    assert ProxySettings.from_env({}).loop == "uvloop"
    assert ProxySettings.from_env({LOOP_ENV: " AsyncIO "}).loop == "asyncio"
    assert ProxySettings.from_env({LOOP_ENV: "asyncio", GIVE_UP_ENV: "3"}).loop == "asyncio"
    with pytest.raises(ProfileError) as caught:
        ProxySettings.from_env({LOOP_ENV: "trio"})
    assert caught.value.message == f"{LOOP_ENV}='trio' is not one of uvloop, asyncio"
    assert caught.value.hint is not None and "`env` of its server entry" in caught.value.hint


def test_the_error_says_what_is_wrong_and_the_hint_what_to_do() -> None:
    with pytest.raises(ProfileError) as caught:
        ProxySettings.from_env({GIVE_UP_ENV: "soon"})
    assert caught.value.message == f"{GIVE_UP_ENV}='soon' is not a number of seconds greater than 0"
    assert caught.value.hint is not None and "`env` of its server entry" in caught.value.hint


def _outage(**settings: Any) -> Outage:
    return Outage(ProxySettings(**settings))


def test_an_outage_gives_up_sooner_before_any_server_answered() -> None:
    outage = _outage(give_up_after=100.0, startup_give_up_after=10.0)
    outage.since -= 11.0
    assert outage.hopeless()  # the client's own 60 s budget is near: answer with the reason
    outage.served = True
    assert not outage.hopeless()
    outage.since -= 90.0
    assert outage.hopeless()


def test_servers_dying_at_start_end_the_outage_early_and_other_failures_do_not() -> None:
    outage = _outage(start_failures=3)
    for _ in range(5):
        outage.start_failed(ConnectError("host unreachable"))
    assert not outage.hopeless() and outage.failures == 0  # a network may come back: keep waiting
    for _ in range(2):
        outage.link_ended(healthy=False, failure=RemoteError("exit status 127"))
    assert not outage.hopeless()
    outage.start_failed(RemoteError("exit status 127"))
    assert outage.hopeless() and isinstance(outage.error, RemoteError)


def test_a_server_that_worked_starts_a_new_outage() -> None:
    outage = _outage(backoff_initial=1.0, backoff_max=8.0)
    error: McpctlError = RemoteError("exit status 127")
    outage.start_failed(error)
    delays = [outage.next_delay() for _ in range(5)]
    assert outage.attempt == 5 and delays[-1] > delays[0]
    outage.since -= 1000.0
    outage.link_ended(healthy=True, failure=None)
    assert outage.served and outage.attempt == 0 and outage.failures == 0 and outage.error is None
    assert not outage.hopeless()
    assert 0.5 <= outage.next_delay() <= 1.0  # back to the first, short delay
