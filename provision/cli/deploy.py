"""``mcpctl deploy ecs|lambda NAME`` and ``mcpctl destroy NAME`` (deployments and EC2 profiles).

Each command prints the plan first (``--dry-run`` stops there), then calls one library function of
:mod:`provision.deploy` and renders the result: human output on stderr, ``--json`` on stdout. Neither
shows the API key: only the path of the 0600 file that holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli import ec2 as ec2_commands
from provision.cli.common import (
    JsonOpt,
    NameArg,
    YesOpt,
    confirm_destroy,
    emit_json,
    err,
    handle_errors,
    phase_printer,
)

if TYPE_CHECKING:
    from provision.deploy import DeployPlan, DeployResult

deploy_app = typer.Typer(
    help="Deploy the HTTP server on AWS: ECS Fargate behind a load balancer, or Lambda.",
    no_args_is_help=True,
)

ImageOpt = Annotated[str, typer.Option(help="Container image URI (pushed to a registry AWS can pull from).")]
DataOpt = Annotated[
    str, typer.Option(help="The sales data as an S3 object: s3://bucket/key (CSV or Parquet).")
]
RegionOpt = Annotated[
    str | None, typer.Option(help="AWS region (default: the deployment's, else your AWS config).")
]
DryRunOpt = Annotated[bool, typer.Option(help="Print the plan and its cost; change nothing.")]


def _print_plan(plan: DeployPlan, *, as_json: bool, dry_run: bool) -> None:
    if as_json and dry_run:
        emit_json(_plan_data(plan))
    err.print(f"plan for [bold]{plan.name}[/bold] ({plan.shape}) in {plan.region}:")
    for step in plan.steps:
        err.print(f"  {step.action:<8} {step.resource:<16} {step.detail}", markup=False)
    err.print(f"cost: ~{plan.cost.hourly_usd:.4f} USD/hour, ~{plan.cost.monthly_usd:.2f} USD/month 24/7")
    err.print(plan.cost.note, markup=False)


def _plan_data(plan: DeployPlan) -> dict[str, object]:
    return {
        "dry_run": True,
        "name": plan.name,
        "shape": plan.shape,
        "region": plan.region,
        "allowed_cidr": plan.allowed_cidr,
        "steps": [{"resource": s.resource, "action": s.action, "detail": s.detail} for s in plan.steps],
        "hourly_usd": plan.cost.hourly_usd,
        "monthly_usd": plan.cost.monthly_usd,
        "cost_note": plan.cost.note,
    }


def _print_result(result: DeployResult, *, as_json: bool) -> None:
    record = result.record
    if as_json:
        emit_json(
            {
                **record.model_dump(mode="json"),
                "record": str(result.record_path),
                "changes": [
                    {"resource": c.resource, "action": c.action, "detail": c.detail} for c in result.changes
                ],
            }
        )
        return
    if not result.changes:
        err.print("nothing to change: the deployment already matches")
    err.print(
        f"[bold green]{record.name} deployed[/bold green] ({record.shape}, {record.region}): {record.url}"
    )
    err.print(f"API key: in {record.api_key_file} (0600); clients send it as `Authorization: Bearer KEY`.")
    err.print(f"`mcpctl destroy {record.name}` removes everything it created.")


@deploy_app.command("ecs")
@handle_errors
def ecs(
    name: NameArg,
    image: ImageOpt,
    data: DataOpt,
    replicas: Annotated[int, typer.Option(help="Tasks to run now.")] = 2,
    min_replicas: Annotated[int | None, typer.Option("--min", help="Autoscaling floor (default: 1).")] = None,
    max_replicas: Annotated[
        int | None, typer.Option("--max", help="Autoscaling ceiling (default: twice --replicas).")
    ] = None,
    cert_arn: Annotated[
        str | None, typer.Option(help="ACM certificate of the HTTPS listener (required for a public one).")
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(help="The certificate's DNS name (a CNAME to the load balancer) for the URL."),
    ] = None,
    allowed_cidr: Annotated[
        str | None, typer.Option(help="Who may reach the load balancer (default: your public IP as a /32).")
    ] = None,
    allow_world: Annotated[
        bool, typer.Option("--allow-world", help="Accept --allowed-cidr wider than /24.")
    ] = False,
    insecure_http_internal: Annotated[
        bool,
        typer.Option(
            "--insecure-http-internal",
            help="TESTS/PRIVATE NETWORKS ONLY: an internal load balancer with plain HTTP, no certificate.",
        ),
    ] = False,
    cpu: Annotated[int, typer.Option(help="Fargate CPU units per task (1024 = 1 vCPU).")] = 1024,
    memory: Annotated[int, typer.Option(help="Memory per task in MiB.")] = 2048,
    region: RegionOpt = None,
    wait: Annotated[bool, typer.Option(help="Wait until the tasks are running and healthy.")] = True,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy NAME on ECS Fargate behind an HTTPS load balancer (idempotent; plan printed first)."""
    from provision.deploy import deploy_ecs, plan_ecs
    from provision.deploy.runtime import DEFAULT_RUNTIME, choose_region, ecs_spec
    from provision.profiles import keys_dir

    runtime = DEFAULT_RUNTIME
    spec = ecs_spec(
        name,
        region=choose_region(name, region),
        image=image,
        data=data,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        allowed_cidr=allowed_cidr,
        allow_world=allow_world,
        cert_arn=cert_arn,
        insecure_http=insecure_http_internal,
        cpu=cpu,
        memory=memory,
        runtime=runtime,
    )
    if insecure_http_internal:
        err.print(
            "[yellow]warning:[/yellow] --insecure-http-internal: no TLS; the load balancer is internal."
        )
    clients = runtime.clients_for(spec.region)
    _print_plan(plan_ecs(spec, clients), as_json=as_json, dry_run=dry_run)
    if dry_run:
        if not as_json:
            err.print(f"nothing changed; run it without --dry-run to deploy {name}.")
        return
    result = deploy_ecs(
        spec,
        clients=clients,
        keys=keys_dir(),
        pacing=runtime.pacing,
        on_phase=phase_printer(),
        wait=wait,
        domain=domain,
    )
    _print_result(result, as_json=as_json)


@deploy_app.command("lambda")
@handle_errors
def lambda_(
    name: NameArg,
    image: ImageOpt,
    data: DataOpt,
    memory: Annotated[int, typer.Option(help="Function memory in MiB (CPU grows with it).")] = 2048,
    timeout: Annotated[
        int, typer.Option(help="Seconds one request may take (a forecast needs ~10-30).")
    ] = 60,
    region: RegionOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy NAME as a Lambda function (the image's lambda target) behind a function URL."""
    from provision.deploy import LambdaSpec, deploy_lambda, parse_s3_uri, plan_lambda
    from provision.deploy.runtime import DEFAULT_RUNTIME, choose_region
    from provision.profiles import keys_dir

    runtime = DEFAULT_RUNTIME
    spec = LambdaSpec(
        name=name,
        region=choose_region(name, region),
        image=image,
        data=parse_s3_uri(data),
        memory=memory,
        timeout_s=timeout,
    )
    clients = runtime.clients_for(spec.region)
    _print_plan(plan_lambda(spec, clients), as_json=as_json, dry_run=dry_run)
    if dry_run:
        if not as_json:
            err.print(f"nothing changed; run it without --dry-run to deploy {name}.")
        return
    result = deploy_lambda(
        spec, clients=clients, keys=keys_dir(), pacing=runtime.pacing, on_phase=phase_printer()
    )
    _print_result(result, as_json=as_json)


@handle_errors
def destroy(
    name: NameArg,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove deployment NAME (or EC2 profile NAME) and everything mcpctl made for it."""
    from provision.deploy import destroy_deployment, find_deployment
    from provision.deploy.runtime import DEFAULT_RUNTIME
    from provision.profiles import keys_dir

    record = find_deployment(name)
    if record is None:
        ec2_commands.destroy(name, yes=yes, as_json=as_json)
        return
    question = (
        f"Destroy deployment '{name}' ({record.shape}, {record.region}): delete everything tagged for it in "
        "AWS (service, load balancer or function, secret, logs, roles) and the local API key?"
    )
    confirm_destroy(question, yes=yes)
    runtime = DEFAULT_RUNTIME
    result = destroy_deployment(
        name,
        clients_for=runtime.clients_for,
        keys=keys_dir(),
        pacing=runtime.pacing,
        on_phase=phase_printer(),
    )
    if as_json:
        emit_json({"aws": list(result.aws), "local_files": [str(p) for p in result.local]})
        return
    err.print(
        f"AWS: removed {len(result.aws)} resource(s)" if result.aws else "AWS: nothing was left to remove"
    )
    for path in result.local:
        err.print(f"removed {path}", markup=False)
    err.print(f"[bold]{name}[/bold] destroyed; nothing tagged for it is left in {record.region}.")
