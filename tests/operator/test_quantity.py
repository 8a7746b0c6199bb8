"""Kubernetes quantities, as the operator (sizes) and the injector (sidecar requests and limits) read them."""

from decimal import Decimal

import pytest

from agentcache_operator import quantity


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        ("2", 2),
        (3, 3),
        ("64Mi", 64 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("500k", 500_000),
        ("1e3", 1000),
        ("1.5E2", 150),
        (".5Ki", 512),
    ],
)
def test_quantities_parse_exactly(text, expected):
    assert quantity.parse(text) == expected == quantity.value(text)


@pytest.mark.parametrize("text", ["", "lots", "1.2.3", "-1", "1 Gi", "1gi", "Mi", True])
def test_anything_else_is_not_a_quantity(text):
    assert quantity.parse(text) is None
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity.value(text)
