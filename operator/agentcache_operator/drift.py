"""Whether a child on the server already is what the operator would apply (then nothing is sent).

A rendered child is stamped with ``agentcache.io/applied-hash``, the hash of everything
the operator sets. A child on the server is up to date when it carries the same stamp
(nothing was added to or removed from the rendering since) and still holds every field
the rendering sets, with the same value (no hand edit): fields the server or other
controllers add are ignored, as server-side apply would leave them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import names


def applied_hash(obj: dict[str, Any]) -> str:
    """A stable hash of the object as rendered, its own stamp left out."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != names.ANNOTATION_APPLIED_HASH}
    meta["annotations"] = annotations
    text = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Set the object's applied-hash annotation (in place) and return it."""
    digest = applied_hash(obj)
    obj["metadata"].setdefault("annotations", {})[names.ANNOTATION_APPLIED_HASH] = digest
    return obj


def holds(observed: Any, desired: Any) -> bool:
    """Every field of ``desired`` is in ``observed`` with the same value (lists item by item)."""
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(k in observed and holds(observed[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(holds(o, d) for o, d in zip(observed, desired))
        )
    return bool(observed == desired)


def up_to_date(observed: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether applying the stamped ``desired`` over ``observed`` would change nothing the operator owns."""
    if observed is None:
        return False
    stamp_of = (observed.get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_APPLIED_HASH)
    return stamp_of == desired["metadata"]["annotations"][names.ANNOTATION_APPLIED_HASH] and holds(observed, desired)
