# The two images of AgentCache from one build stage (build from the repository root):
#   docker build --target sidecar  -t agentcache/sidecar:0.1.0 .
#   docker build --target operator -t agentcache/operator:0.1.0 .
# The tag is the version in pyproject.toml (tests/test_version.py keeps the chart and the
# operator's default sidecar image on it). The build stage makes wheels of the distribution
# and of every dependency of both extras; each image installs only its own extra.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar/ sidecar/
COPY operator/ operator/
COPY charts/agentcache/crds/ charts/agentcache/crds/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[sidecar,operator]"

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin agentcache
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# The cache sidecar that the injector adds to agent pods.
FROM runtime AS sidecar
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "agentcache[sidecar]" \
 && command -v agentcache-sidecar agentcache \
 && install -d -o 65532 -g 65532 /var/run/agentcache
# Without --config the sidecar runs its embedded default: socket ./agentcache.sock here.
WORKDIR /var/run/agentcache
# names.SIDECAR_UID: the injector sets the same numeric user in the pod's securityContext
USER 65532:65532
# Prometheus /metrics, /healthz and /readyz
EXPOSE 9464
ENTRYPOINT ["agentcache-sidecar"]

# The operator and the injector: the chart runs `agentcache-operator` (the entrypoint) and
# `agentcache-injector` (by `command:`) from this one image.
FROM runtime AS operator
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "agentcache[operator]" \
 && python -c "from agentcache_operator.crd import crd; crd()" \
 && command -v agentcache-operator agentcache-injector
# the chart runs the operator and injector pods as this same numeric user
USER 65532:65532
# agentcache-operator: 8080 Prometheus /metrics, 8081 liveness /healthz; agentcache-injector: 10250 HTTPS webhook
EXPOSE 8080 8081 10250
ENTRYPOINT ["agentcache-operator"]
CMD ["--all-namespaces"]
