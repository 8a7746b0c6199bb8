"""From observed children and pods to phase, conditions and counts (pure; the e2e tests cover the API side)."""

from __future__ import annotations

from agentcache_operator import names
from agentcache_operator.render import Cache, render_children
from agentcache_operator.status import (
    Observed,
    assess,
    changed,
    conditions,
    count_pods,
    sidecar_config_hash,
    status,
)


def cache(**valkey) -> Cache:
    return Cache.from_body(
        {"metadata": {"name": "c", "namespace": "n", "generation": 3}, "spec": {"backend": "valkey", "valkey": valkey}}
    )


def sts(name: str, ready: int, wanted: int, generation: int = 1, observed: int = 1) -> dict:
    return {
        "metadata": {"name": name, "generation": generation},
        "spec": {"replicas": wanted},
        "status": {"readyReplicas": ready, "observedGeneration": observed},
    }


def test_standalone_is_pending_until_its_pod_is_ready_then_ready():
    assert assess(cache(), Observed([sts("c-valkey", 0, 1)]), None).phase == "Pending"
    ready = assess(cache(), Observed([sts("c-valkey", 1, 1)]), "Pending")
    assert (ready.phase, ready.reason, ready.progressing) == ("Ready", "AllReplicasReady", False)


def test_losing_a_ready_pod_is_degraded_not_pending():
    assessment = assess(cache(), Observed([sts("c-valkey", 0, 1)]), "Ready")
    assert assessment.phase == "Degraded" and "0/1 pods ready" in assessment.message


def test_replicated_with_a_primary_but_missing_replicas_is_degraded():
    observed = Observed([sts("c-valkey", 1, 1), sts("c-valkey-replica", 1, 2)])
    assessment = assess(cache(topology="replicated", replicas=2), observed, None)
    assert assessment.phase == "Degraded"
    assert "StatefulSet c-valkey-replica: 1/2 pods ready" in assessment.message


def test_cluster_is_pending_until_the_bootstrap_job_completes():
    pods_ready = Observed([sts("c-valkey", 6, 6)], bootstrap_job={"status": {"active": 1}})
    assert assess(cache(topology="cluster"), pods_ready, None).phase == "Pending"
    pods_ready.bootstrap_job = {"status": {"succeeded": 1}}
    assert assess(cache(topology="cluster"), pods_ready, "Pending").phase == "Ready"


def test_a_failed_bootstrap_says_how_to_retry():
    failed_job = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    assessment = assess(cache(topology="cluster"), Observed([sts("c-valkey", 6, 6)], failed_job), None)
    assert assessment.phase == "Failed"
    assert "kubectl logs -n n job/c-valkey-bootstrap" in assessment.message and "delete the Job" in assessment.message


def test_a_rollout_in_progress_is_progressing():
    rolling = assess(cache(), Observed([sts("c-valkey", 1, 1, generation=2, observed=1)]), "Ready")
    assert rolling.phase == "Ready" and rolling.progressing


def test_non_valkey_caches_are_ready_once_their_config_is_applied():
    memory = Cache.from_body({"metadata": {"name": "m", "namespace": "n"}, "spec": {"backend": "memory"}})
    assert assess(memory, Observed(), None).phase == "Ready"


def test_conditions_keep_their_transition_time_until_they_flip():
    ready = assess(cache(), Observed([sts("c-valkey", 1, 1)]), None)
    first = conditions(
        ready,
        3,
        [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "Degraded", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        ],
    )
    by_type = {c["type"]: c for c in first}
    assert by_type["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert (
        by_type["Degraded"]["status"] == "False" and by_type["Degraded"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    )
    assert all(c["observedGeneration"] == 3 for c in first)


def test_status_is_unchanged_when_only_timestamps_differ():
    ready = assess(cache(), Observed([sts("c-valkey", 1, 1)]), None)
    old = {"phase": "Ready", "conditions": conditions(ready, 3, [])}
    new = {"phase": "Ready", "conditions": [{**c, "lastTransitionTime": "later"} for c in old["conditions"]]}
    assert not changed(old, new)
    assert changed(old, {**new, "phase": "Degraded"})


def memory_cache(**spec) -> Cache:
    return Cache.from_body(
        {"metadata": {"name": "m", "namespace": "n", "generation": 1}, "spec": {"backend": "memory", **spec}}
    )


def agent_pod(name: str, cache: str = "m", injected: bool = True, config_hash: str | None = None) -> dict:
    labels = {names.LABEL_CACHE: cache, **({names.LABEL_INJECTED: "true"} if injected else {})}
    annotations = {names.ANNOTATION_CONFIG_HASH: config_hash} if config_hash else {}
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations}}


def test_the_config_hash_is_the_sidecar_config_maps_and_follows_the_spec():
    before = sidecar_config_hash(memory_cache(), render_children(memory_cache()))
    after = sidecar_config_hash(memory_cache(defaultTTL=42), render_children(memory_cache(defaultTTL=42)))
    assert before and after and before != after
    assert before == sidecar_config_hash(memory_cache(), render_children(memory_cache()))
    assert sidecar_config_hash(memory_cache(), []) is None


def test_injected_pods_with_another_or_no_config_hash_are_outdated():
    pods = [
        agent_pod("current", config_hash="new"),
        agent_pod("old", config_hash="old"),
        agent_pod("unannotated"),
        agent_pod("plain", injected=False, config_hash="old"),
        agent_pod("other-cache", cache="x", config_hash="old"),
    ]
    assert count_pods(pods, "m", "new") == (3, 1, 2)
    assert count_pods(pods, "m", None) == (3, 1, 0)


def test_status_publishes_the_config_hash_and_keeps_the_old_one_when_none_was_applied():
    cache = memory_cache()
    ready = assess(cache, Observed(), None)
    written = status(cache, ready, Observed(injected_pods=2, outdated_pods=1, config_hash="abc"), {})
    assert written["configHash"] == "abc" and written["outdatedPods"] == 1 and written["injectedPods"] == 2
    failed_run = status(cache, ready, Observed(), {"configHash": "abc"})
    assert "configHash" not in failed_run  # a merge patch without the key leaves the published hash
    assert changed(written, {**written, "configHash": "def"})
