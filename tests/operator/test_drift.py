"""drift.py: a child is re-applied only when the rendering changed or a field the operator sets was edited."""

from __future__ import annotations

import copy

from agentcache_operator import names
from agentcache_operator.drift import applied_hash, holds, stamp, up_to_date


def config_map(**data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}},
        "data": data,
    }


def as_stored(obj: dict) -> dict:
    """What the API server hands back: the same fields plus its own."""
    stored = copy.deepcopy(obj)
    stored["metadata"].update({"uid": "u", "resourceVersion": "7", "creationTimestamp": "2026-01-01T00:00:00Z"})
    stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    return stored


def test_a_child_as_stored_is_up_to_date():
    desired = stamp(config_map(k="v"))
    assert up_to_date(as_stored(desired), stamp(config_map(k="v")))


def test_a_hand_edit_of_an_owned_field_is_drift():
    stored = as_stored(stamp(config_map(k="v")))
    stored["data"]["k"] = "edited"
    assert not up_to_date(stored, stamp(config_map(k="v")))


def test_a_field_removed_from_the_rendering_changes_the_stamp():
    stored = as_stored(stamp(config_map(k="v", old="x")))
    assert holds(stored["data"], {"k": "v"}), "the remaining fields still hold: only the stamp tells"
    assert not up_to_date(stored, stamp(config_map(k="v")))


def test_a_missing_child_or_a_missing_stamp_is_never_up_to_date():
    desired = stamp(config_map(k="v"))
    assert not up_to_date(None, desired)
    unstamped = as_stored(desired)
    del unstamped["metadata"]["annotations"][names.ANNOTATION_APPLIED_HASH]
    assert not up_to_date(unstamped, desired)


def test_the_stamp_ignores_itself_and_follows_every_other_field():
    obj = config_map(k="v")
    assert applied_hash(stamp(copy.deepcopy(obj))) == applied_hash(obj)
    assert applied_hash(config_map(k="w")) != applied_hash(obj)


def test_lists_are_compared_item_by_item_and_by_length():
    assert holds([{"a": 1, "extra": 2}], [{"a": 1}])
    assert not holds([{"a": 1}, {"a": 2}], [{"a": 1}])
    assert not holds({"a": "1"}, {"a": 1})
