"""From observed children to phase and conditions (pure; the e2e tests cover the API side)."""

from __future__ import annotations

from agentcache_operator.render import Cache
from agentcache_operator.status import Observed, assess, changed, conditions


def cache(**valkey) -> Cache:
    return Cache.from_body({"metadata": {"name": "c", "namespace": "n", "generation": 3},
                            "spec": {"backend": "valkey", "valkey": valkey}})


def sts(name: str, ready: int, wanted: int, generation: int = 1, observed: int = 1) -> dict:
    return {"metadata": {"name": name, "generation": generation},
            "spec": {"replicas": wanted}, "status": {"readyReplicas": ready, "observedGeneration": observed}}


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
    first = conditions(ready, 3, [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
                                  {"type": "Degraded", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}])
    by_type = {c["type"]: c for c in first}
    assert by_type["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert by_type["Degraded"]["status"] == "False" and by_type["Degraded"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert all(c["observedGeneration"] == 3 for c in first)


def test_status_is_unchanged_when_only_timestamps_differ():
    ready = assess(cache(), Observed([sts("c-valkey", 1, 1)]), None)
    old = {"phase": "Ready", "conditions": conditions(ready, 3, [])}
    new = {"phase": "Ready", "conditions": [{**c, "lastTransitionTime": "later"} for c in old["conditions"]]}
    assert not changed(old, new)
    assert changed(old, {**new, "phase": "Degraded"})
