"""The admission webhook that adds the cache sidecar to agent pods.

Pure parts: ``patch.build_patch`` (pod + AgentCache in, JSONPatch out),
``admission.decide`` (AdmissionReview in, AdmissionReview response out),
``webhook.render_webhook_configuration`` and the certificate functions of
``certs``. I/O parts: ``kubeapi`` (AgentCache lookup, Secret and webhook
configuration updates) and ``server`` (the HTTPS endpoint).
"""
