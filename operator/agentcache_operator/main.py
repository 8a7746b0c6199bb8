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
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0: off)")
    parser.add_argument("--liveness-port", type=int, default=8081, help="liveness endpoint /healthz port (0: off)")
    parser.add_argument("--bind", default="0.0.0.0", help="address of the metrics and liveness endpoints")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=None,
        help="how often each cache is re-applied to undo drift (default 60, or $AGENTCACHE_RESYNC_SECONDS)",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reconcile only while holding a Lease, so that one operator acts (default: on)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE") or "default",
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    parser.add_argument("--leader-election-id", default="agentcache-operator", help="name of the Lease")
    parser.add_argument(
        "--lease-seconds",
        type=int,
        default=15,
        help="how long a dead leader's Lease keeps a standby waiting (default 15)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # kopf logs every handler run at INFO: too much with hundreds of caches
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.lease_seconds < 3:
        raise SystemExit("agentcache-operator: --lease-seconds must be at least 3")
    if args.resync_seconds is not None:
        if args.resync_seconds <= 0:
            raise SystemExit("agentcache-operator: --resync-seconds must be positive")
        os.environ["AGENTCACHE_RESYNC_SECONDS"] = str(args.resync_seconds)
    from . import handlers  # noqa: F401  (registers the handlers; reads the resync interval)

    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.bind)
    liveness = f"http://{args.bind}:{args.liveness_port}/healthz" if args.liveness_port else None
    election = None
    if args.leader_election:
        from .leader import Election, load_credentials, standby_liveness

        load_credentials()
        election = Election(args.leader_election_namespace, args.leader_election_id, args.lease_seconds)
        election.start()
        with standby_liveness(args.bind, args.liveness_port):
            try:
                election.leading.wait()
            except KeyboardInterrupt:  # stopped while a standby
                return
    try:
        kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace, liveness_endpoint=liveness)
    finally:
        if election is not None:
            election.release()


if __name__ == "__main__":
    main()
