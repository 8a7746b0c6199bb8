"""``agentcache-injector``: the admission webhook that adds the cache sidecar to agent pods.

TLS, one of:
  --tls-cert-file/--tls-key-file   files kept by cert-manager or the chart (re-read on change)
  --tls-secret NAME                the injector makes, shares and rotates its CA and certificate
                                   in that Secret, and keeps --webhook-configuration's caBundle in sync
  --tls-dir DIR                    the same, stored in a directory (running outside a cluster)
AgentCaches come from the Kubernetes API, or from --caches FILE (YAML, no API server needed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace

import yaml
from kubernetes.config import ConfigException

from .. import names
from . import certs
from .kubeapi import ApiCacheLookup, Credentials, KubeApi, StaticLookup, server_version
from .patch import SidecarDefaults
from .server import Injector
from .tls import DirectoryStore, FileCertificates, ManagedCertificates, SecretStore, WebhookCaBundle

log = logging.getLogger("agentcache.injector")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="agentcache-injector", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument(
        "--port", type=int, default=10250, help="HTTPS port (default: 10250, which managed control planes can reach)"
    )
    parser.add_argument(
        "--namespace",
        default=env.get("POD_NAMESPACE", "default"),
        help="the injector's namespace (default: $POD_NAMESPACE)",
    )
    parser.add_argument(
        "--service",
        default="agentcache-injector",
        help="the injector's Service; its DNS names go into a generated certificate",
    )
    parser.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="another name or IP address for a generated certificate (repeatable), e.g. "
        "127.0.0.1 for an injector the API server reaches by URL",
    )
    parser.add_argument("--tls-cert-file", help="serving certificate PEM (with --tls-key-file)")
    parser.add_argument("--tls-key-file", help="serving key PEM")
    parser.add_argument("--tls-secret", help="Secret holding the injector's own CA and certificate")
    parser.add_argument("--tls-dir", help="directory holding the injector's own CA and certificate")
    parser.add_argument(
        "--webhook-configuration", help="MutatingWebhookConfiguration whose caBundle follows the injector's CA"
    )
    parser.add_argument(
        "--cert-refresh-seconds",
        type=float,
        default=300.0,
        help="how often the certificate is re-read or renewed (default: 300)",
    )
    parser.add_argument(
        "--sidecar-image",
        default=env.get("AGENTCACHE_SIDECAR_IMAGE") or names.SIDECAR_IMAGE_DEFAULT,
        help="sidecar image when an AgentCache does not set spec.sidecar.image (default: $AGENTCACHE_SIDECAR_IMAGE)",
    )
    parser.add_argument(
        "--sidecar-image-pull-secret",
        action="append",
        default=[],
        metavar="SECRET",
        help="a Secret of the agent's namespace for pulling the sidecar image (repeatable)",
    )
    parser.add_argument("--sidecar-pull-policy", default="IfNotPresent", choices=["Always", "IfNotPresent", "Never"])
    parser.add_argument(
        "--watch-namespace",
        default=env.get("AGENTCACHE_WATCH_NAMESPACE") or None,
        help="read AgentCaches of this namespace only (a namespaced install)",
    )
    parser.add_argument("--cache-ttl", type=float, default=5.0, help="seconds an AgentCache lookup is reused")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument("--caches", help="YAML file of AgentCache objects to use instead of the API")
    parser.add_argument(
        "--log-level",
        default=env.get("AGENTCACHE_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        type=str.lower,
    )
    args = parser.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("--tls-cert-file and --tls-key-file go together")
    modes = [bool(args.tls_cert_file), bool(args.tls_secret), bool(args.tls_dir)]
    if sum(modes) != 1:
        parser.error("choose one TLS source: --tls-cert-file/--tls-key-file, --tls-secret or --tls-dir")
    if args.caches and args.tls_secret:
        parser.error("--tls-secret needs the Kubernetes API; it cannot be combined with --caches")
    return args


def load_caches(path: str) -> list[dict]:
    """AgentCache objects from a YAML file (documents, or lists of them); bad ones are a clear error."""
    with open(path, encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    caches = []
    for document in documents:
        for item in document if isinstance(document, list) else document.get("items", [document]):
            metadata = item.get("metadata") if isinstance(item, dict) else None
            if (
                not isinstance(metadata, dict)
                or item.get("kind") != names.KIND
                or not metadata.get("name")
                or not metadata.get("namespace")
            ):
                raise ValueError(f"{path}: every document must be an {names.KIND} with metadata.name and namespace")
            caches.append(item)
    return caches


def build_injector(args: argparse.Namespace) -> tuple[Injector, KubeApi | None]:
    api = None if args.caches and not args.tls_secret else KubeApi(Credentials.discover(args.kubeconfig))
    if args.caches:
        lookup = StaticLookup(load_caches(args.caches))
    else:
        lookup = ApiCacheLookup(api, ttl=args.cache_ttl, watch_namespace=args.watch_namespace)
    dns_names = certs.service_dns_names(args.service, args.namespace) + args.tls_san
    if args.tls_cert_file:
        source = FileCertificates(args.tls_cert_file, args.tls_key_file)
    elif args.tls_dir:
        source = ManagedCertificates(DirectoryStore(args.tls_dir), dns_names)
    else:
        publish = WebhookCaBundle(api, args.webhook_configuration) if args.webhook_configuration else None
        labels = {names.LABEL_MANAGED_BY: "agentcache-injector", names.LABEL_COMPONENT: "injector"}
        source = ManagedCertificates(SecretStore(api, args.namespace, args.tls_secret, labels), dns_names, publish)
    settings = SidecarDefaults(
        image=args.sidecar_image,
        image_pull_policy=args.sidecar_pull_policy,
        image_pull_secrets=tuple(args.sidecar_image_pull_secret),
    )
    return Injector(lookup, settings, source, refresh_seconds=args.cert_refresh_seconds), api


async def run(args: argparse.Namespace) -> None:
    injector, api = build_injector(args)
    if api is not None:
        version = await server_version(api)
        if version is None:
            log.warning("cannot read the API server's version; pods are not checked for native sidecar support")
        injector.settings = replace(injector.settings, kubernetes_version=version)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await injector.start(args.host, args.port)
        await stop.wait()
    finally:
        await injector.stop()
        if api is not None:
            await api.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(args))
    except (OSError, ValueError, RuntimeError, ConfigException) as error:
        print(f"agentcache-injector: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
