"""Deploy and destroy: the whole conversation with AWS for one deployment, and its local record.

A deploy finds each resource by name and tag and creates only what is missing, so re-running it
converges. A *first* deploy (nothing tagged for the name existed) that fails part-way removes
everything it created before reporting the failure, so a mistake never leaves a billed half.
The API key is written to a 0600 file beside mcpctl's other keys; the record
(:mod:`provision.deploy.record`) names that file, never the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provision.deploy import access, apikey, balancer, ecs, function, network, service, teardown
from provision.deploy.aws_errors import translated
from provision.deploy.model import (
    Change,
    DeployClients,
    EcsSpec,
    LambdaSpec,
    PhaseCallback,
    Spec,
    silent,
)
from provision.deploy.record import Deployment, find_deployment, remove_deployment, save_deployment
from provision.ec2.model import Pacing
from provision.errors import CloudError, McpctlError, ProfileError
from provision.profiles import list_profiles


@dataclass(frozen=True)
class DeployResult:
    """What a deploy did, and how clients reach the deployment."""

    record: Deployment
    changes: tuple[Change, ...]
    record_path: Path


@dataclass(frozen=True)
class Teardown:
    """What ``destroy`` removed in AWS and locally."""

    aws: tuple[str, ...]
    local: tuple[Path, ...]


def _check_name_free(name: str) -> None:
    if name in list_profiles():
        raise ProfileError(
            f"'{name}' is already a host profile; a deployment needs a name of its own",
            hint="deploy under another name (mcpctl connect and destroy find a deployment by its name)",
        )


def _guarded(
    spec: Spec, clients: DeployClients, pacing: Pacing, report: PhaseCallback, run: Callable[[], Deployment]
) -> Deployment:
    """Run ``run()``; when this is a first deploy and it fails, remove what it created and say so."""
    with translated(spec.region):
        first = not teardown.leftovers(clients, spec.name)
    try:
        return run()
    except (Exception, KeyboardInterrupt) as exc:  # an interrupted first deploy is removed too
        if not first:
            raise
        report("rollback", "the first deploy failed: removing what it created")
        try:
            teardown.destroy(spec.name, spec.region, clients=clients, on_phase=report, pacing=pacing)
        except McpctlError as cleanup:
            raise CloudError(
                f"deploy of '{spec.name}' failed ({_describe(exc)}) "
                f"and so did its cleanup: {cleanup.message}",
                hint=f"run `mcpctl destroy {spec.name}` to remove what is left",
            ) from exc
        if isinstance(exc, McpctlError):
            raise type(exc)(
                f"deploy of '{spec.name}' failed: {exc.message}",
                hint=f"{exc.hint + '; ' if exc.hint else ''}everything this first deploy created was removed",
            ) from exc
        raise


def _describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, McpctlError) else type(exc).__name__


def deploy_ecs(
    spec: EcsSpec,
    *,
    clients: DeployClients,
    keys: Path,
    pacing: Pacing,
    on_phase: PhaseCallback | None = None,
    wait: bool = True,
    domain: str | None = None,
) -> DeployResult:
    """Deploy (or converge) the Fargate service of ``spec`` and save its record.

    ``spec.allowed_cidr`` must be resolved (:func:`provision.deploy.planning.resolve_cidr`).
    ``domain``: the DNS name the certificate is for (a CNAME to the load balancer); the recorded URL
    uses it instead of the load balancer's own name.

    Raises:
        ProfileError: the name belongs to a host profile.
        CloudError: AWS failed, or the service did not become healthy (a first deploy is then removed).
    """
    _check_name_free(spec.name)
    report = on_phase or silent
    changes: list[Change] = []
    with translated(spec.region):
        balancer.check_certificate(clients.acm, spec)

    def run() -> Deployment:
        c, name = clients, spec.name
        with translated(spec.region):
            account = c.sts.get_caller_identity()["Account"]
            vpc, subnets = network.default_subnets(c.ec2, spec.region)
            ecs.ensure_log_group(c.logs, spec, "ecs", changes)
            secret = apikey.ensure_api_key(c.secrets, spec, "ecs", keys, changes)
            exec_role = access.ensure_role(
                c.iam, spec, access.execution_role_name(name), "ecs-tasks.amazonaws.com",
                access.execution_policy(spec, account, secret), "ecs", changes,
            )  # fmt: skip
            task_role = access.ensure_role(
                c.iam, spec, access.task_role_name(name), "ecs-tasks.amazonaws.com",
                access.task_policy(spec), "ecs", changes,
            )  # fmt: skip
            alb_sg = network.ensure_group(
                c.ec2, spec, network.alb_group_name(name), vpc, "load balancer, clients only", changes
            )
            task_sg = network.ensure_group(
                c.ec2, spec, network.task_group_name(name), vpc, "tasks, from the load balancer only", changes
            )
            network.sync_rule(c.ec2, alb_sg, network.alb_rule(spec, str(spec.allowed_cidr)), changes)
            network.sync_rule(c.ec2, task_sg, network.task_rule(alb_sg["GroupId"]), changes)
            tg = balancer.ensure_target_group(c.elbv2, spec, vpc, changes)
            lb, dns = balancer.ensure_balancer(c.elbv2, spec, subnets, alb_sg["GroupId"], changes)
            balancer.ensure_listener(c.elbv2, spec, lb, tg, changes)
            cluster = ecs.ensure_cluster(c.ecs, spec, changes)
            request = ecs.task_definition(
                spec, execution_role=exec_role, task_role=task_role, secret_arn=secret
            )
            task_def = ecs.ensure_task_definition(c.ecs, spec, request, changes)
            where = service.Placement(cluster, subnets, task_sg["GroupId"], tg)
            service.ensure_service(c.ecs, spec, task_def, where, changes)
            service.ensure_scaling(c.autoscaling, spec, changes)
            for change in changes:
                report(change.resource, f"{change.action} {change.detail}")
            if wait:
                service.wait_stable(c.ecs, cluster, name, pacing, report)
        scheme = "http" if spec.insecure_http else "https"
        return Deployment(
            name=name,
            shape="ecs",
            region=spec.region,
            url=f"{scheme}://{domain or dns}/mcp",
            api_key_file=apikey.key_path(keys, name),
            image=spec.image,
            data=spec.data.uri,
            replicas=spec.replicas,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            load_balancer_dns=dns,
            insecure_http=spec.insecure_http,
        )

    record = _guarded(spec, clients, pacing, report, run)
    return DeployResult(record, tuple(changes), save_deployment(record))


def deploy_lambda(
    spec: LambdaSpec,
    *,
    clients: DeployClients,
    keys: Path,
    pacing: Pacing,
    on_phase: PhaseCallback | None = None,
) -> DeployResult:
    """Deploy (or converge) the Lambda function of ``spec`` and its URL, and save its record.

    Raises:
        ProfileError: the name belongs to a host profile.
        CloudError: AWS failed (a first deploy is then removed).
    """
    _check_name_free(spec.name)
    report = on_phase or silent
    changes: list[Change] = []

    def run() -> Deployment:
        c, name = clients, spec.name
        with translated(spec.region):
            account = c.sts.get_caller_identity()["Account"]
            ecs.ensure_log_group(c.logs, spec, "lambda", changes)
            secret = apikey.ensure_api_key(c.secrets, spec, "lambda", keys, changes)
            role = access.ensure_role(
                c.iam, spec, access.lambda_role_name(name), "lambda.amazonaws.com",
                access.lambda_policy(spec, account, secret), "lambda", changes,
            )  # fmt: skip
            request = function.function_request(spec, role, secret)
            function.ensure_function(c.lambda_, spec, request, pacing, changes)
            url = function.ensure_url(c.lambda_, name, changes)
            for change in changes:
                report(change.resource, f"{change.action} {change.detail}")
        return Deployment(
            name=name,
            shape="lambda",
            region=spec.region,
            url=url.rstrip("/") + "/mcp",
            api_key_file=apikey.key_path(keys, name),
            image=spec.image,
            data=spec.data.uri,
        )

    record = _guarded(spec, clients, pacing, report, run)
    return DeployResult(record, tuple(changes), save_deployment(record))


def destroy_deployment(
    name: str,
    *,
    clients_for: Callable[[str], DeployClients],
    keys: Path,
    pacing: Pacing,
    on_phase: PhaseCallback | None = None,
) -> Teardown:
    """Remove deployment ``name`` from AWS (verified), then its API key file and its record.

    Raises:
        ProfileError: there is no deployment of that name.
        CloudError: AWS failed, or something tagged for it is left (local files are then kept).
    """
    record = find_deployment(name)
    if record is None:
        raise ProfileError(
            f"no deployment named '{name}'", hint="`mcpctl deploy ecs|lambda NAME` creates one"
        )
    removed = teardown.destroy(
        name, record.region, clients=clients_for(record.region), on_phase=on_phase, pacing=pacing
    )
    local: list[Path] = []
    key = apikey.key_path(keys, name)
    try:
        key.unlink()
        local.append(key)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ProfileError(f"cannot remove {key}: {exc.strerror or exc}", hint="remove it by hand") from exc
    path = remove_deployment(name)
    if path is not None:
        local.append(path)
    return Teardown(removed, tuple(local))
