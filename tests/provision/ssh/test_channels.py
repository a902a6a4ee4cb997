"""channels.py: the slot count of one connection and the brief retry of a refused channel open."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import asyncssh
import pytest

from provision.ssh.channels import MAX_CHANNELS, ChannelSlots
from provision.ssh.target import Target

pytestmark = pytest.mark.anyio

TARGET = Target(host="h", port=22, user="u", known_hosts=Path("/kh"))


class _Conn:
    """Stands in for an asyncssh connection: only ``is_closed`` is asked."""

    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed


def _slots(conn: _Conn) -> ChannelSlots:
    return ChannelSlots(cast(Any, conn), TARGET)


async def test_slots_are_counted_while_held() -> None:
    slots = _slots(_Conn())
    async with slots.slot():
        assert slots.in_use == 1
        await slots.acquire()
        assert slots.in_use == 2
        slots.release()
    assert slots.in_use == 0
    assert MAX_CHANNELS == 8  # stock sshd's MaxSessions is 10: two to spare


async def test_a_refused_open_is_retried_while_the_connection_lives() -> None:
    slots = _slots(_Conn())
    attempts = 0

    async def opener() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "no more sessions")
        return "channel"

    assert await slots.open(opener) == "channel"
    assert attempts == 3


async def test_a_refused_open_on_a_closed_connection_is_not_retried() -> None:
    conn = _Conn()
    slots = _slots(conn)
    attempts = 0

    async def opener() -> str:
        nonlocal attempts
        attempts += 1
        conn.closed = True
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "gone")

    with pytest.raises(asyncssh.ChannelOpenError):
        await slots.open(opener)
    assert attempts == 1
