"""Find, start, stop and verified teardown of the instance behind a profile (by its tag)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provision.ec2.aws_errors import translated
from provision.ec2.instances import (
    describe,
    start_instance,
    tagged_instances,
    to_instance,
)
from provision.ec2.model import (
    DEFAULT_PACING,
    LIVE_STATES,
    NOT_TERMINATED,
    TAG_PROFILE,
    DestroyReport,
    Ec2Clients,
    Ec2Instance,
    Pacing,
    PhaseCallback,
    make_clients,
    silent,
    tag_filter,
)
from provision.ec2.network import (
    delete_security_group,
)
from provision.ec2.wait import wait_state
from provision.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client


def find_instance(profile: str, region: str, *, clients: Ec2Clients | None = None) -> Ec2Instance | None:
    """The profile's instance in a live state (pending/running/stopping/stopped), or None.

    Raises:
        CloudError: two or more instances carry the profile's tag (both ids named), or AWS failed.
    """
    with translated(region):
        ec2 = (clients or make_clients(region)).ec2
        found = tagged_instances(ec2, profile, LIVE_STATES)
        if len(found) > 1:
            ids = ", ".join(sorted(i["InstanceId"] for i in found))
            raise CloudError(
                f"several EC2 instances in {region} are tagged {TAG_PROFILE}={profile}: {ids}",
                hint="terminate the extra ones (aws ec2 terminate-instances --instance-ids ...) and re-run",
            )
        return to_instance(found[0]) if found else None


def start(
    profile: str,
    region: str,
    *,
    clients: Ec2Clients | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = DEFAULT_PACING,
) -> Ec2Instance:
    """Start the profile's instance (waiting out a pending stop) and return it running.

    The public IP is new after every start; the host key alias (by instance id) is not.

    Raises:
        CloudError: no instance for the profile, or AWS failed.
    """
    with translated(region):
        c = clients or make_clients(region)
        inst = _require_instance(profile, region, c)
        return start_instance(c.ec2, inst, pacing, pacing.clock() + pacing.timeout_s, on_phase or silent)


def stop(
    profile: str,
    region: str,
    *,
    wait: bool = True,
    clients: Ec2Clients | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = DEFAULT_PACING,
) -> Ec2Instance:
    """Stop the profile's instance (compute billing ends; the volume is kept and billed).

    Raises:
        CloudError: no instance for the profile, or AWS failed.
    """
    with translated(region):
        c = clients or make_clients(region)
        report = on_phase or silent
        inst = _require_instance(profile, region, c)
        if inst.state == "stopped":
            report("stop", f"{inst.instance_id} is already stopped")
            return inst
        c.ec2.stop_instances(InstanceIds=[inst.instance_id])
        report("stop", f"stopping {inst.instance_id}")
        if wait:
            wait_state(
                c.ec2, "instance_stopped", inst.instance_id, pacing.clock() + pacing.timeout_s, pacing, report
            )
        return describe(c.ec2, inst.instance_id)


def destroy(
    profile: str,
    region: str,
    *,
    clients: Ec2Clients | None = None,
    on_phase: PhaseCallback | None = None,
    pacing: Pacing = DEFAULT_PACING,
) -> DestroyReport:
    """Remove everything of the profile: instances, security group, key pair; then verify.

    Instances are terminated and awaited (the security group stays "in use" until then), the group
    is deleted with bounded retries while AWS still reports DependencyViolation, then the key pair.
    Finally nothing tagged ``mcpctl:profile=<profile>`` may remain (instances not terminated, groups,
    key pairs, volumes). Running it again when everything is gone is a no-op.

    Raises:
        CloudError: AWS failed, or something tagged for the profile is still there afterwards.
    """
    report = on_phase or silent
    deadline = pacing.clock() + pacing.timeout_s
    with translated(region):
        ec2 = (clients or make_clients(region)).ec2
        ids = sorted(i["InstanceId"] for i in tagged_instances(ec2, profile, NOT_TERMINATED))
        if ids:
            ec2.terminate_instances(InstanceIds=ids)
            report("terminate", ", ".join(ids))
            for iid in ids:
                wait_state(ec2, "instance_terminated", iid, deadline, pacing, report)
        # Only what carries our tag: a same-named group or key pair without it is not ours to delete.
        sgs = {
            g["GroupId"]
            for g in ec2.describe_security_groups(Filters=[tag_filter(profile)])["SecurityGroups"]
        }
        for sg in sorted(sgs):
            delete_security_group(ec2, sg, pacing, deadline)
            report("security-group", f"deleted {sg}")
        keys = {k["KeyName"] for k in ec2.describe_key_pairs(Filters=[tag_filter(profile)])["KeyPairs"]}
        for k in sorted(keys):
            ec2.delete_key_pair(KeyName=k)
            report("key-pair", f"deleted {k}")
        while leftovers := _leftovers(ec2, profile):
            if pacing.clock() >= deadline:
                raise CloudError(
                    f"after destroy, AWS still lists for profile {profile}: {', '.join(leftovers)}",
                    hint="re-run destroy in a minute, or remove them in the EC2 console",
                )
            pacing.sleep(pacing.poll_s)  # describe calls are eventually consistent after deletes
        return DestroyReport(tuple(ids), tuple(sorted(sgs)), tuple(sorted(keys)))


def _leftovers(ec2: EC2Client, profile: str) -> list[str]:
    left = [f"instance {i['InstanceId']}" for i in tagged_instances(ec2, profile, NOT_TERMINATED)]
    left += [
        f"security group {g['GroupId']}"
        for g in ec2.describe_security_groups(Filters=[tag_filter(profile)])["SecurityGroups"]
    ]
    left += [
        f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs(Filters=[tag_filter(profile)])["KeyPairs"]
    ]
    volumes = ec2.describe_volumes(Filters=[tag_filter(profile)])["Volumes"]
    left += [f"volume {v['VolumeId']}" for v in volumes if v.get("State") not in ("deleting", "deleted")]
    return left


def _require_instance(profile: str, region: str, c: Ec2Clients) -> Ec2Instance:
    inst = find_instance(profile, region, clients=c)
    if inst is None:
        raise CloudError(
            f"no EC2 instance in {region} is tagged {TAG_PROFILE}={profile}",
            hint=f"launch one with `mcpctl provision {profile} --ec2`",
        )
    return inst
