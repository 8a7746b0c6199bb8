"""``agentcache-operator``: the kopf operator with the settings it needs, as one command."""

from __future__ import annotations

import argparse
import logging
import os

import kopf
from prometheus_client import start_http_server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentcache-operator", description="Reconciles AgentCache resources.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable); default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0: off)")
    parser.add_argument("--liveness-port", type=int, default=8081, help="liveness endpoint /healthz port (0: off)")
    parser.add_argument("--bind", default="0.0.0.0", help="address of the metrics and liveness endpoints")
    parser.add_argument("--resync-seconds", type=float, default=None,
                        help="how often each cache is re-applied to undo drift (default 60, or $AGENTCACHE_RESYNC_SECONDS)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # kopf logs every handler run at INFO: too much with hundreds of caches
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.resync_seconds is not None:
        if args.resync_seconds <= 0:
            raise SystemExit("agentcache-operator: --resync-seconds must be positive")
        os.environ["AGENTCACHE_RESYNC_SECONDS"] = str(args.resync_seconds)
    from . import handlers  # noqa: F401  (registers the handlers; reads the resync interval)

    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.bind)
    liveness = f"http://{args.bind}:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace, liveness_endpoint=liveness)


if __name__ == "__main__":
    main()
