"""provision.ec2.pricing: the approximate cost of an instance, and the caveats shown with it."""

from __future__ import annotations

import pytest

from provision.ec2 import pricing


def test_hourly_cost_of_a_known_and_an_unknown_type() -> None:
    assert pricing.hourly_cost_usd("t3.small") == pytest.approx(0.0208)
    assert pricing.hourly_cost_usd("t4g.small") == pytest.approx(0.0168)
    assert pricing.hourly_cost_usd("m5.24xlarge") is None


def test_monthly_cost_adds_the_address_and_the_volume() -> None:
    # (0.0208 + 0.005) $/h * 730 h + 16 GB * 0.08 $/GB-month = 18.834 + 1.28
    assert pricing.monthly_cost_usd("t3.small", 16) == pytest.approx(20.11)
    assert pricing.monthly_cost_usd("t3.small", 116) == pytest.approx(28.11)  # 100 GB more: $8
    assert pricing.monthly_cost_usd("m5.24xlarge", 16) is None


def test_cost_note_of_a_known_type() -> None:
    note = pricing.cost_note("t3.small")
    assert note.startswith("Approximate us-east-1 on-demand Linux price")
    assert "No built-in price" not in note
    assert "stopped instance still pays for its volume" in note


def test_cost_note_of_an_unknown_type_says_so_first() -> None:
    note = pricing.cost_note("m5.24xlarge")
    assert note.startswith("No built-in price for m5.24xlarge: see the EC2 pricing page. ")
    assert note.endswith(pricing.cost_note("t3.small"))
