"""Registry write throughput under contention.

N writers record different services in the same environment at once, each through its
own GitOpsStore (as separate Airflow workers would), against a real local bare repo.
Prints writes per second, push retries, and lost updates (must be 0).

    .venv/bin/python bench/registry.py [--writers 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from release.gitops.store import GitOpsStore  # noqa: E402
from release.gitops.registry import Registry  # noqa: E402
from tests.helpers import make_gitops_repo, many_services, request_for  # noqa: E402


def one_round(writers: int, same_host: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config, template = many_services(Path(tmp), writers)
        url = make_gitops_repo(Path(tmp) / "gitops.git", config, template)
        barrier = threading.Barrier(writers)
        attempts: list[int] = []
        failures: list[BaseException] = []

        def writer(i: int) -> None:
            service = f"svc-{i:02d}"
            registry = Registry(GitOpsStore(url, "main", max_attempts=60, serialize_locally=same_host), config)
            barrier.wait()
            try:
                result = registry.record_deployment("dev", [request_for(config, service, f"1.0.{i}")], by="bench", run_id=f"run-{i}")
                attempts.append(result.attempts)
            except BaseException as exc:  # noqa: BLE001
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, writers + 1)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start

        state = Registry(GitOpsStore(url), config).snapshot()
        landed = {s for s, d in state.current("dev").items()}
        expected = {f"svc-{i:02d}" for i in range(1, writers + 1)}
        lost = len(expected - landed) + (writers - len(state.entries))
        return {"seconds": elapsed, "writes": len(attempts), "retries": sum(attempts) - len(attempts),
                "failures": len(failures), "lost": lost}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(f"registry bench: {args.writers} concurrent writers, one environment, {args.rounds} rounds per mode")
    print("modes: many-hosts = writers race and retry on rejected pushes; one-host = writers on a host take turns")
    print(f"{'mode':>10} {'round':>5} {'seconds':>8} {'writes/s':>9} {'retries':>8} {'retries/write':>14} {'failed':>7} {'lost':>5}")
    worst_lost = 0
    rates: dict[str, list[float]] = {"many-hosts": [], "one-host": []}
    for mode in rates:
        for r in range(1, args.rounds + 1):
            m = one_round(args.writers, same_host=(mode == "one-host"))
            worst_lost = max(worst_lost, m["lost"])
            rates[mode].append(m["writes"] / m["seconds"])
            print(f"{mode:>10} {r:>5} {m['seconds']:>8.2f} {rates[mode][-1]:>9.2f} {m['retries']:>8} "
                  f"{m['retries'] / max(m['writes'], 1):>14.2f} {m['failures']:>7} {m['lost']:>5}")
    best = {mode: max(v) for mode, v in rates.items()}
    print(f"one-host / many-hosts throughput: {best['one-host'] / best['many-hosts']:.2f}x")
    print(f"lost updates: {worst_lost}")
    return 1 if worst_lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
