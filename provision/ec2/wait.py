"""Waiting, under one deadline: for an instance state (boto3 waiters) and for an SSH banner.

All waits take a :class:`~provision.ec2.model.Pacing` (clock, sleep, poll interval, timeout), so tests
reach deadlines on a fake clock instead of sleeping.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from provision.ec2.model import DEFAULT_PACING, Pacing, PhaseCallback, SshProbe, silent
from provision.errors import CloudError, ConnectError

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client


def wait_state(
    ec2: EC2Client,
    waiter: str,
    instance_id: str,
    deadline: float,
    pacing: Pacing,
    report: PhaseCallback = silent,
) -> None:
    """Wait with boto3's ``waiter`` (e.g. ``instance_running``) until ``deadline`` on ``pacing.clock``.

    Raises:
        botocore.exceptions.ClientError: AWS refused the describe call the waiter makes.
        CloudError: the state was not reached in time (with AWS's state reason when it gives one).
    """
    from botocore.exceptions import WaiterError

    report("wait", f"{instance_id}: {waiter.removeprefix('instance_')}")
    remaining = max(deadline - pacing.clock(), 0.0)
    delay = max(int(pacing.poll_s), 0)
    attempts = max(1, int(remaining // delay) if delay else 40)
    try:
        ec2.get_waiter(waiter).wait(  # type: ignore[call-overload]
            InstanceIds=[instance_id], WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        error = exc.last_response.get("Error") if isinstance(exc.last_response, dict) else None
        if error:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": error}, "DescribeInstances") from exc
        reason = ""
        try:
            reply = ec2.describe_instances(InstanceIds=[instance_id])
            reason = reply["Reservations"][0]["Instances"][0].get("StateReason", {}).get("Message", "")
        except Exception:  # the state reason is a courtesy; the timeout is the error
            reason = ""
        raise CloudError(
            f"instance {instance_id} did not become {waiter.removeprefix('instance_')} in time"
            + (f" ({reason})" if reason else ""),
            hint="look at it in the EC2 console; re-running the command continues from where it is",
        ) from exc


def ssh_banner_probe(host: str, port: int, timeout_s: float) -> bool:
    """True if ``host:port`` accepts TCP and sends an SSH-2.0 identification line (RFC 4253 4.2)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            data = b""
            while len(data) < 4096:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
                lines = data.split(b"\n")
                # Servers may send other lines before the version line; only complete lines count.
                if any(ln.startswith((b"SSH-2.0-", b"SSH-1.99-")) for ln in lines[:-1]):
                    return True
    except OSError:
        return False
    return False


def wait_ssh(
    host: str,
    port: int = 22,
    *,
    deadline: float | None = None,
    probe: SshProbe | None = None,
    pacing: Pacing = DEFAULT_PACING,
    on_phase: PhaseCallback | None = None,
) -> None:
    """Poll until ``host:port`` answers with an SSH banner.

    Args:
        deadline: absolute time on ``pacing.clock``; default ``now + pacing.timeout_s``.

    Raises:
        ConnectError: no SSH banner before the deadline.
    """
    probe = probe or ssh_banner_probe
    report = on_phase or silent
    end = deadline if deadline is not None else pacing.clock() + pacing.timeout_s
    report("ssh", f"waiting for an SSH banner from {host}:{port}")
    while True:
        if probe(host, port, max(1.0, min(5.0, end - pacing.clock()))):
            report("ssh", f"{host}:{port} answers")
            return
        if pacing.clock() >= end:
            raise ConnectError(
                f"{host}:{port} did not answer with an SSH banner in time",
                hint="check that your current public IP is the one allowed (re-run provision to update the "
                "rule) and that outbound port 22 is not blocked where you are",
            )
        pacing.sleep(pacing.poll_s)
