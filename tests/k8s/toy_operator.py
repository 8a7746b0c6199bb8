"""A tiny real kopf operator for the emulator tests.

A ``Toy`` gets a ConfigMap ``<name>-toy`` (adopted: owned by the Toy) holding
``spec.message``; the Toy's status echoes the message once the ConfigMap has it, and an Event says so.
Deleting a Toy leaves a ``<name>-farewell`` ConfigMap (a delete handler, so kopf
puts a finalizer on every Toy and removes it after the handler ran).
"""

import os

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "k8stest.agentcache.io", "v1", "toys"


@kopf.on.login()
def login(**kwargs):
    """Read $KUBECONFIG now: the kubernetes library read it when imported."""
    return kopf.login_with_kubeconfig(**kwargs)


def _core() -> kubernetes.client.CoreV1Api:
    client = kubernetes.config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    return kubernetes.client.CoreV1Api(client)


def _upsert_config_map(namespace: str, body: dict) -> None:
    api = _core()
    try:
        api.create_namespaced_config_map(namespace, body)
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
        api.patch_namespaced_config_map(body["metadata"]["name"], namespace, {"data": body["data"]})


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(body, spec, name, namespace, patch, **_):
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-toy"},
                  "data": {"message": spec.get("message", "")}}
    kopf.adopt(config_map)
    _upsert_config_map(namespace, config_map)
    kopf.info(body, reason="Reconciled", message=f"ConfigMap {name}-toy holds the message")
    patch.status["message"] = spec.get("message", "")
    patch.status["configMap"] = config_map["metadata"]["name"]


@kopf.on.delete(GROUP, VERSION, PLURAL)
def farewell(name, namespace, **_):
    _upsert_config_map(namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": f"{name}-farewell"}, "data": {"toy": name}})
