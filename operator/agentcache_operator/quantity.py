"""Kubernetes quantities (``100m``, ``0.5``, ``64Mi``, ``1G``, ``1e6``), parsed in one place for the operator and
the injector."""

from __future__ import annotations

import re
from decimal import Decimal

_QUANTITY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?$")
_MULTIPLIERS: dict[str, int | Decimal] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def parse(value: int | str) -> Decimal | None:
    """The exact value of a quantity, or None when ``value`` is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return None
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _MULTIPLIERS:
        return number * _MULTIPLIERS[suffix]
    return number * Decimal(10) ** int(suffix[1:]) if suffix else number


def value(quantity: int | str) -> Decimal:
    """The exact value of a quantity; ``ValueError`` when ``quantity`` is not one."""
    parsed = parse(quantity)
    if parsed is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    return parsed
