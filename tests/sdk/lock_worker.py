"""A separate agent process for the single-flight tests: calls one expensive cached function once.

Each compute appends one line to the counter file, so the test can count how
many processes computed. Prints the result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from agentcache import AsyncCache, Cache, cached


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("counter")
    parser.add_argument("--ready")
    parser.add_argument("--go")
    parser.add_argument("--sleep", type=float, default=0.5)
    parser.add_argument("--lock-ttl", type=float, default=30.0)
    parser.add_argument("--sync", action="store_true")
    args = parser.parse_args()

    def record_compute() -> dict:
        with open(args.counter, "a") as counter:
            counter.write(f"{os.getpid()}\n")
        return {"computed_by": os.getpid()}

    def wait_for_go() -> None:
        if args.ready:
            Path(args.ready).touch()
        while args.go and not os.path.exists(args.go):
            time.sleep(0.002)

    if args.sync:

        @cached(ttl=60, key_template="expensive:{n}", cache=Cache(args.socket), lock_ttl=args.lock_ttl)
        def expensive_sync(n: int) -> dict:
            result = record_compute()
            time.sleep(args.sleep)
            return result

        wait_for_go()
        print(json.dumps(expensive_sync(7)), flush=True)
        return

    @cached(ttl=60, key_template="expensive:{n}", cache=AsyncCache(args.socket), lock_ttl=args.lock_ttl)
    async def expensive(n: int) -> dict:
        result = record_compute()
        await asyncio.sleep(args.sleep)
        return result

    wait_for_go()
    print(json.dumps(asyncio.run(expensive(7))), flush=True)


if __name__ == "__main__":
    main()
