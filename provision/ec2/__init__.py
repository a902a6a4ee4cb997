"""EC2 hosts for mcpctl: plan, tag-idempotent launch, find, start, stop and verified teardown.

This package is the AWS room; each AWS conversation lives in a module of its own:

- :mod:`provision.ec2.model` the values (spec, instance, launch result, clients, tags);
- :mod:`provision.ec2.keys` the client key and its EC2 key pair;
- :mod:`provision.ec2.network` the caller's address, the default VPC, the SSH-only security group;
- :mod:`provision.ec2.instances` describe/find/run/start instances, the Ubuntu AMI;
- :mod:`provision.ec2.wait` waiting for a state or an SSH banner under one deadline;
- :mod:`provision.ec2.pricing` the approximate cost table;
- :mod:`provision.ec2.aws_errors` botocore errors -> CloudError naming the IAM action;
- :mod:`provision.ec2.cloudinit` the user-data: pinned host key, autostop watchdog;
- :mod:`provision.ec2.launching` plan and launch (found again by tag, so re-running converges);
- :mod:`provision.ec2.power` find, start, stop and verified destroy of a profile's instance;
- :mod:`provision.ec2.provisioning` ``provision --ec2``: spec from options, profile, host-key pinning;
- :mod:`provision.ec2.lifecycle` status/stop/start/destroy of ``ec2`` profiles, ``ensure_running``.

Everything below ``provisioning``/``lifecycle`` takes plain values (an :class:`Ec2Spec`, a keys
directory) and returns dataclasses; profiles, known_hosts and rendering are the caller's business.
boto3 is imported lazily (``mcpctl --help`` must not pay for it). Every EC2/SSM action these modules
call is listed in the IAM policy of docs/EC2.md; a test keeps the two in sync. Modules inside this
package import each other directly, never this facade.
"""

from __future__ import annotations

from provision.ec2.aws_errors import translate_aws_error
from provision.ec2.instances import arch_for_instance_type
from provision.ec2.keys import client_key_path, ensure_client_key
from provision.ec2.launching import launch, plan
from provision.ec2.model import (
    AMI_PARAMETER,
    LIVE_STATES,
    TAG_CREATED_BY,
    TAG_OWNER,
    TAG_PROFILE,
    Change,
    ClientKey,
    DestroyReport,
    Ec2Clients,
    Ec2Instance,
    Ec2Launch,
    Ec2Plan,
    Ec2Spec,
    EndpointResolver,
    HostKeyFactory,
    Pacing,
    PhaseCallback,
    SshEndpoint,
    SshProbe,
    host_key_alias,
    make_clients,
    public_endpoint,
)
from provision.ec2.network import CHECKIP_URL, detect_public_ip, normalize_cidr
from provision.ec2.power import destroy, find_instance, start, stop
from provision.ec2.pricing import hourly_cost_usd
from provision.ec2.wait import ssh_banner_probe, wait_ssh

__all__ = [
    "AMI_PARAMETER",
    "CHECKIP_URL",
    "LIVE_STATES",
    "TAG_CREATED_BY",
    "TAG_OWNER",
    "TAG_PROFILE",
    "Change",
    "ClientKey",
    "DestroyReport",
    "Ec2Clients",
    "Ec2Instance",
    "Ec2Launch",
    "Ec2Plan",
    "Ec2Spec",
    "EndpointResolver",
    "HostKeyFactory",
    "Pacing",
    "PhaseCallback",
    "SshEndpoint",
    "SshProbe",
    "arch_for_instance_type",
    "client_key_path",
    "destroy",
    "detect_public_ip",
    "ensure_client_key",
    "find_instance",
    "host_key_alias",
    "hourly_cost_usd",
    "launch",
    "make_clients",
    "normalize_cidr",
    "plan",
    "public_endpoint",
    "ssh_banner_probe",
    "start",
    "stop",
    "translate_aws_error",
    "wait_ssh",
]
