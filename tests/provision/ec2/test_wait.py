"""provision.ec2.wait: an instance state and an SSH banner, waited for on a fake clock."""

from __future__ import annotations

import socket
import threading

import pytest
from botocore.exceptions import ClientError

from provision import ec2 as e
from provision.ec2.aws_errors import translate_aws_error
from provision.ec2.wait import wait_state
from provision.errors import CloudError, ConnectError
from tests.provision.ec2.helpers import (
    REGION,
    FakeClock,
    bare_instance,
    inject_error,
)


@pytest.fixture
def waiter_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sleeps boto3's waiters ask for, recorded instead of slept."""
    asked: list[float] = []
    monkeypatch.setattr("botocore.waiter.time.sleep", asked.append)
    return asked


@pytest.fixture
def overdue(fake_clock: FakeClock) -> tuple[e.Pacing, float]:
    """A pacing that polls every 5 s on the fake clock, and a deadline that has already passed."""
    pacing = e.Pacing(poll_s=5, timeout_s=120, clock=fake_clock.clock, sleep=fake_clock.sleep)
    return pacing, fake_clock.now - 1


def _stopped_instance(aws: e.Ec2Clients) -> str:
    iid = bare_instance(aws)
    aws.ec2.stop_instances(InstanceIds=[iid])
    return iid


# --------------------------------------------------------------------------------------------------
# waiting for an instance state


def test_wait_state_returns_once_the_state_is_reached(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    iid = _stopped_instance(aws)
    phases: list[tuple[str, str]] = []
    wait_state(
        aws.ec2,
        "instance_stopped",
        iid,
        pacing.clock() + pacing.timeout_s,
        pacing,
        lambda p, d: phases.append((p, d)),
    )
    assert phases == [("wait", f"{iid}: stopped")]


def test_wait_state_past_its_deadline_still_looks_once(
    aws: e.Ec2Clients, overdue: tuple[e.Pacing, float], waiter_sleeps: list[float]
) -> None:
    pacing, deadline = overdue
    wait_state(aws.ec2, "instance_running", bare_instance(aws), deadline, pacing)
    assert waiter_sleeps == []


def test_wait_state_times_out_with_the_state_reason(
    aws: e.Ec2Clients, overdue: tuple[e.Pacing, float], waiter_sleeps: list[float]
) -> None:
    pacing, deadline = overdue
    iid = _stopped_instance(aws)  # nothing starts it again
    with pytest.raises(CloudError, match=f"instance {iid} did not become running in time") as err:
        wait_state(aws.ec2, "instance_running", iid, deadline, pacing)
    assert err.value.message.endswith(" (Client.UserInitiatedShutdown: User initiated shutdown)")
    assert err.value.hint and "re-running" in err.value.hint
    assert waiter_sleeps == []  # the deadline had passed: it gave up instead of waiting


def test_wait_state_times_out_on_the_fake_clock(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    iid = bare_instance(aws)  # running, and nothing stops it
    with pytest.raises(CloudError) as err:
        wait_state(aws.ec2, "instance_stopped", iid, pacing.clock() + pacing.timeout_s, pacing)
    # moto gives a running instance an empty state reason: none is added to the message
    assert err.value.message == f"instance {iid} did not become stopped in time"


def test_wait_state_passes_on_an_aws_refusal(aws: e.Ec2Clients, pacing: e.Pacing) -> None:
    iid = bare_instance(aws)
    inject_error(aws.ec2, "DescribeInstances", "UnauthorizedOperation")
    with pytest.raises(ClientError) as err:
        wait_state(aws.ec2, "instance_running", iid, pacing.clock() + pacing.timeout_s, pacing)
    assert err.value.response["Error"]["Code"] == "UnauthorizedOperation"
    assert "AWS denied ec2:DescribeInstances" in str(translate_aws_error(err.value, REGION))


# --------------------------------------------------------------------------------------------------
# waiting for SSH


def _serve_once(payload: bytes) -> tuple[int, threading.Thread]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", True),
        (b"a pre-banner line\r\nSSH-2.0-x\r\n", True),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", False),
        (b"SSH-2.0-no newline yet", False),
    ],
)
def test_ssh_banner_probe(payload: bytes, expected: bool) -> None:
    port, thread = _serve_once(payload)
    assert e.ssh_banner_probe("127.0.0.1", port, 2.0) is expected
    thread.join(2)


def test_ssh_banner_probe_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        assert e.ssh_banner_probe("127.0.0.1", port, 1.0) is False


def test_wait_ssh_polls_until_the_banner(pacing: e.Pacing, fake_clock: FakeClock) -> None:
    answers = iter([False, False, True])
    seen: list[tuple[str, int]] = []

    def probe(host: str, port: int, _t: float) -> bool:
        seen.append((host, port))
        return next(answers)

    e.wait_ssh("198.51.100.1", 22, probe=probe, pacing=pacing)
    assert seen == [("198.51.100.1", 22)] * 3
    assert fake_clock.sleeps == 2


def test_wait_ssh_deadline(pacing: e.Pacing) -> None:
    with pytest.raises(ConnectError, match=r"198\.51\.100\.1:22"):
        e.wait_ssh("198.51.100.1", probe=lambda _h, _p, _t: False, pacing=pacing)
