"""What a deployment costs per hour: a built-in table of us-east-1 list prices (see docs/DEPLOY.md).

Only an order of magnitude for plans; the AWS pricing pages are the truth, and other regions are
usually 0-30 % higher. Usage-based parts (load balancer capacity units, log ingestion, Lambda
requests) are stated per unit, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: When the figures below were current (us-east-1 on-demand list prices; docs/DEPLOY.md cites them).
PRICES_DATE = "June 2026"
FARGATE_VCPU_HOUR = 0.04048  # Linux/x86
FARGATE_GB_HOUR = 0.004445
ALB_HOUR = 0.0225
ALB_LCU_HOUR = 0.008
PUBLIC_IPV4_HOUR = 0.005
SECRET_MONTH = 0.40
HOURS_PER_MONTH = 730
LAMBDA_GB_SECOND = 0.0000166667  # x86
LAMBDA_PER_MILLION_REQUESTS = 0.20
LOGS_GB_INGESTED = 0.50
#: An application load balancer keeps one address in each of its (two) zones.
ALB_ADDRESSES = 2


@dataclass(frozen=True)
class Cost:
    """The fixed hourly cost of a plan, its monthly equivalent, and what it leaves out."""

    hourly_usd: float
    monthly_usd: float
    note: str


def ecs_cost(replicas: int, cpu_units: int, memory_mib: int) -> Cost:
    """Fargate tasks with public addresses, the load balancer with its two addresses, the secret."""
    task = cpu_units / 1024 * FARGATE_VCPU_HOUR + memory_mib / 1024 * FARGATE_GB_HOUR + PUBLIC_IPV4_HOUR
    fixed = ALB_HOUR + ALB_ADDRESSES * PUBLIC_IPV4_HOUR + SECRET_MONTH / HOURS_PER_MONTH
    hourly = replicas * task + fixed
    note = (
        f"us-east-1 list prices of {PRICES_DATE}: Fargate ${FARGATE_VCPU_HOUR}/vCPU-h and "
        f"${FARGATE_GB_HOUR}/GB-h, ALB ${ALB_HOUR}/h, public IPv4 ${PUBLIC_IPV4_HOUR}/h each "
        f"({replicas} task(s) + {ALB_ADDRESSES} for the ALB), secret ${SECRET_MONTH}/month. Not included: "
        f"ALB capacity units (${ALB_LCU_HOUR}/LCU-h, a light load uses under one), log ingestion "
        f"(${LOGS_GB_INGESTED}/GB), data transfer out. Autoscaling up to more tasks costs more per task."
    )
    return Cost(round(hourly, 4), round(hourly * HOURS_PER_MONTH, 2), note)


def lambda_cost(memory_mib: int) -> Cost:
    """Lambda costs nothing while idle except the secret; requests are billed by duration."""
    hourly = SECRET_MONTH / HOURS_PER_MONTH
    per_second = memory_mib / 1024 * LAMBDA_GB_SECOND
    note = (
        f"us-east-1 list prices of {PRICES_DATE}: idle costs only the secret (${SECRET_MONTH}/month); each "
        f"request costs ${LAMBDA_PER_MILLION_REQUESTS:.2f} per million plus ${per_second:.7f} per second "
        f"it runs at {memory_mib} MiB (x86 ${LAMBDA_GB_SECOND:.10f}/GB-s); logs ${LOGS_GB_INGESTED:.2f}/GB."
    )
    return Cost(round(hourly, 4), round(hourly * HOURS_PER_MONTH, 2), note)
