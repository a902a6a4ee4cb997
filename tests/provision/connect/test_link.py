"""The host's side of the proxy: a silent link noticed, and only JSON-RPC from the server let through."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from provision.connect import jsonrpc
from provision.connect.proxy import Proxy
from tests.provision.connect.helpers import (
    BOUND,
    descendants,
    fast,
    in_process,
    new_marker,
    new_server,
    standin_command,
)


@pytest.mark.anyio
async def test_a_half_dead_link_is_noticed_by_the_keepalive(sshd: Any, standin: Path, tmp_path: Path) -> None:
    marker = new_marker()
    target = sshd.target(keepalive_interval=0.3)
    proxy = Proxy("halfdead", target, standin_command(standin, marker), settings=fast())
    frozen: list[int] = []
    try:
        async with in_process(proxy, tmp_path / "proxy.log") as running:
            client = running.client
            await client.handshake()
            client.send({"id": 2, "method": "echo"})
            first = (await client.response(2))["result"]["pid"]
            # Freeze the session: the TCP connection stays up but nothing answers, as behind a dead NAT.
            frozen = descendants(sshd.process.pid)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            client.send({"id": 3, "method": "echo"})
            assert (await client.response(3))["error"]["code"] == jsonrpc.LINK_DROPPED
            await new_server(marker, old=first)
            client.send({"id": 4, "method": "echo"})
            assert (await client.response(4))["result"]["pid"] != first
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "SSH connection failed" in (tmp_path / "proxy.log").read_text()


@pytest.mark.anyio
async def test_only_jsonrpc_reaches_the_client_and_junk_goes_to_the_log(
    sshd: Any, standin: Path, tmp_path: Path
) -> None:
    marker = new_marker()
    proxy = Proxy("junk", sshd.target(), standin_command(standin, marker, flags=["--junk"]), settings=fast())
    async with in_process(proxy, tmp_path / "proxy.log") as running:
        client = running.client
        await client.handshake()
        for request_id in range(2, 5):
            client.send({"id": request_id, "method": "echo"})
            assert "result" in await client.response(request_id)
        running.close_stdin()
        assert await running.exit_code() == 0
        with anyio.fail_after(BOUND):
            assert await client.reader.read() == b""  # nothing after the last message either
    assert [m["id"] for m in client.seen] == ["init", 2, 3, 4]  # recv() checked each one's shape
    text = (tmp_path / "proxy.log").read_text()
    for junk in (
        "Welcome to the stand-in",
        "junk: a banner line",
        "{not json",
        "junk: JSON, but no message",
        "[]",
    ):
        assert junk in text
    assert "unfinished line from the server: 'junk: an unfinished last line'" in text


@pytest.mark.anyio
async def test_rc_file_noise_of_the_login_account_does_not_reach_the_client(
    sshd: Any, shared_standin: Path, tmp_path: Path
) -> None:
    target = sshd.noisy_target()  # skips unless root
    command = standin_command(shared_standin, new_marker(), python="/usr/bin/python3")
    async with in_process(
        Proxy("noisy", target, command, settings=fast()), tmp_path / "proxy.log"
    ) as running:
        await running.client.handshake()
        running.client.send({"id": 2, "method": "echo"})
        assert "result" in await running.client.response(2)
    assert all(sshd.noise not in json.dumps(m) for m in running.client.seen)
    assert f"{sshd.noise}: on stderr" in (tmp_path / "proxy.log").read_text()  # stderr is logged
