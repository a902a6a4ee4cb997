"""How ``mcpctl deploy`` reaches AWS, and the choices made before any AWS call (region, source range).

:class:`DeployRuntime` holds the real defaults (boto3's credential chain, the 10-minute deadline, the
caller's address from checkip); tests swap parts. :func:`choose_region` and :func:`ecs_spec` turn
command-line values into a spec, refusing what cannot work before anything is created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from provision.deploy.model import DeployClients, EcsSpec, make_clients, parse_s3_uri
from provision.deploy.planning import resolve_cidr
from provision.deploy.record import find_deployment
from provision.ec2.model import DEFAULT_PACING, Pacing
from provision.errors import CloudError, OptionError, ProfileError


@dataclass(frozen=True)
class DeployRuntime:
    """The clients, the pacing of waits and the address detection a deploy uses."""

    clients: Callable[[str], DeployClients] | None = None
    pacing: Pacing = field(default=DEFAULT_PACING)
    detect_ip: Callable[[], str] | None = None

    def clients_for(self, region: str) -> DeployClients:
        """The clients of ``region``.

        Raises:
            CloudError: boto3 cannot build them (e.g. AWS_PROFILE names a profile that does not exist).
        """
        from provision.deploy.aws_errors import translated

        with translated(region):
            return self.clients(region) if self.clients is not None else make_clients(region)


DEFAULT_RUNTIME = DeployRuntime()


def _is_private(cidr: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).is_private
    except ValueError:
        return False  # resolve_cidr says what is wrong with it


def choose_region(name: str, region: str | None) -> str:
    """The region to deploy ``name`` in: the option, else the existing deployment's, else AWS config.

    Raises:
        ProfileError: the deployment exists in another region than the one asked for.
        CloudError: no region given, recorded or configured.
    """
    from provision.ec2.provisioning import default_region

    record = find_deployment(name)
    if record is not None and region and region != record.region:
        raise ProfileError(
            f"deployment '{name}' runs in {record.region}, not {region}",
            hint=f"run `mcpctl destroy {name}` first to move it, or deploy under another name",
        )
    chosen = region or (record.region if record is not None else None) or default_region()
    if not chosen:
        raise CloudError("no AWS region chosen", hint="pass --region (e.g. eu-west-1) or set AWS_REGION")
    return chosen


def ecs_spec(
    name: str,
    *,
    region: str,
    image: str,
    data: str,
    replicas: int,
    min_replicas: int | None,
    max_replicas: int | None,
    allowed_cidr: str | None,
    allow_world: bool,
    runtime: DeployRuntime = DEFAULT_RUNTIME,
    **rest: Any,
) -> EcsSpec:
    """The Fargate spec from command-line values; without ``--min``/``--max``: 1 to twice the replicas.

    Raises:
        OptionError: a value is invalid (the message names it).
        ProfileError: the client range is not a range, or too wide without ``allow_world``.
        CloudError: no range given and the caller's address cannot be detected.
    """
    low = min_replicas if min_replicas is not None else 1
    high = max_replicas if max_replicas is not None else max(replicas * 2, replicas)
    # The spec validates the sizes and the certificate before the address is detected over the network.
    draft = EcsSpec(
        name=name,
        region=region,
        image=image,
        data=parse_s3_uri(data),
        replicas=replicas,
        min_replicas=low,
        max_replicas=high,
        allowed_cidr="0.0.0.0/32",
        **rest,
    )
    if draft.insecure_http and allowed_cidr is None:
        raise OptionError(
            "an internal load balancer is reached from inside its VPC, not from your public address",
            hint="pass --allowed-cidr with your clients' private range, e.g. 172.31.0.0/16 (a default VPC's)",
        )
    # A private range behind an internal load balancer is not "the world", however wide.
    private = draft.insecure_http and allowed_cidr is not None and _is_private(allowed_cidr)
    cidr = resolve_cidr(allowed_cidr, allow_world=allow_world or private, detect=runtime.detect_ip)
    return replace(draft, allowed_cidr=cidr)
