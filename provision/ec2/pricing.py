"""What an mcpctl instance costs: a built-in table of approximate on-demand prices.

The figures are us-east-1 on-demand Linux prices (other regions are usually 0-30 % higher). They are
only used to show an order of magnitude in plans and ``status``; the EC2 pricing page is the truth.
"""

from __future__ import annotations

# Approximate us-east-1 on-demand Linux prices (USD/hour); other regions are usually 0-30% higher.
_HOURLY_USD = {
    "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832, "t3.xlarge": 0.1664,
    "t3a.small": 0.0188, "t3a.medium": 0.0376, "t3a.large": 0.0752,
    "t4g.micro": 0.0084, "t4g.small": 0.0168, "t4g.medium": 0.0336, "t4g.large": 0.0672, "t4g.xlarge": 0.1344,
    "m7i.large": 0.1008, "m7i-flex.large": 0.0958, "m7g.large": 0.0816, "m6i.large": 0.096,
    "c7i.large": 0.0893, "c7g.large": 0.0725, "r7i.large": 0.1323, "r7g.large": 0.1071,
}  # fmt: skip
GP3_USD_GB_MONTH = 0.08
PUBLIC_IPV4_USD_HOUR = 0.005
HOURS_PER_MONTH = 730


def hourly_cost_usd(instance_type: str) -> float | None:
    """Approximate us-east-1 on-demand price of ``instance_type``, or None if not in the table."""
    return _HOURLY_USD.get(instance_type)


def monthly_cost_usd(instance_type: str, volume_gb: int) -> float | None:
    """Approximate cost of running 24/7 for a month: instance, public IPv4 and gp3 volume."""
    hourly = hourly_cost_usd(instance_type)
    if hourly is None:
        return None
    return round((hourly + PUBLIC_IPV4_USD_HOUR) * HOURS_PER_MONTH + volume_gb * GP3_USD_GB_MONTH, 2)


def cost_note(instance_type: str) -> str:
    """The caveats that go with the figures (and the lack of one for an unknown type)."""
    note = (
        "Approximate us-east-1 on-demand Linux price (other regions differ); the monthly figure runs "
        f"24/7 and adds the gp3 volume (${GP3_USD_GB_MONTH}/GB-month) and the public IPv4 address "
        f"(${PUBLIC_IPV4_USD_HOUR}/h). A stopped instance still pays for its volume."
    )
    if hourly_cost_usd(instance_type) is None:
        note = f"No built-in price for {instance_type}: see the EC2 pricing page. " + note
    return note
