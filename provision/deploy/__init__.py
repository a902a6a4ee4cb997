"""Deployments of the HTTP server on AWS: ECS Fargate behind a load balancer, or Lambda.

Each AWS conversation lives in a module of its own, as in :mod:`provision.ec2`:

- :mod:`provision.deploy.model` the values (specs, names, tags, clients, the container's command);
- :mod:`provision.deploy.aws_errors` botocore errors -> CloudError naming the IAM action;
- :mod:`provision.deploy.network` default subnets, the load balancer's and the tasks' security groups;
- :mod:`provision.deploy.access` the IAM roles and their least-privilege inline policies;
- :mod:`provision.deploy.apikey` the API key: Secrets Manager and the local 0600 file;
- :mod:`provision.deploy.balancer` the load balancer, its listener, the target group checking /health;
- :mod:`provision.deploy.ecs` the log group, cluster and task definition;
- :mod:`provision.deploy.service` the ECS service, its autoscaling, waiting until it is healthy;
- :mod:`provision.deploy.function` the Lambda function and its URL;
- :mod:`provision.deploy.pricing` the hourly cost of a plan;
- :mod:`provision.deploy.planning` the read-only plan (``--dry-run``);
- :mod:`provision.deploy.teardown` verified removal of everything tagged for a deployment;
- :mod:`provision.deploy.record` the local record ``connect`` and ``destroy`` read;
- :mod:`provision.deploy.runtime` the clients and pacing a deploy uses, region and source range choices;
- :mod:`provision.deploy.deploying` deploy (tag-idempotent, a failed first deploy cleaned up) and destroy.

boto3 is imported lazily. Every action these modules call is listed in the IAM policy of
docs/DEPLOY.md; a test keeps the two in sync. Modules inside the package import each other directly,
never this facade.
"""

from __future__ import annotations

from provision.deploy.deploying import DeployResult, Teardown, deploy_ecs, deploy_lambda, destroy_deployment
from provision.deploy.model import DeployClients, EcsSpec, LambdaSpec, make_clients, parse_s3_uri
from provision.deploy.planning import DeployPlan, plan_ecs, plan_lambda, resolve_cidr
from provision.deploy.record import Deployment, endpoint, find_deployment

__all__ = [
    "DeployClients",
    "DeployPlan",
    "DeployResult",
    "Deployment",
    "EcsSpec",
    "LambdaSpec",
    "Teardown",
    "deploy_ecs",
    "deploy_lambda",
    "destroy_deployment",
    "endpoint",
    "find_deployment",
    "make_clients",
    "parse_s3_uri",
    "plan_ecs",
    "plan_lambda",
    "resolve_cidr",
]
