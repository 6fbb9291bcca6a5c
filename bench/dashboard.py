"""Server time of the Releases view on a large registry.

1,000 services x 3 environments, 100,000 history entries, in a real local bare GitOps repository.
Measures the matrix page and a service page (read model + rendered HTML, what the endpoints do):

- cold, first load: a fresh API server process reads the registry at the tip commit;
- cold, new commit: a deployment lands (one entry appended, evidence added), the next view reads it;
- warm: the same commit, cached (the tip asked of the remote at most every 2 s); and warm when the
  tip is asked again (`git ls-remote`, same commit);

and, for the same data, reading `python -m release registry show` does (clone + strict parse +
the table's data) for the ratio. Goals: warm <= 50 ms, cold <= 1 s.

    .venv/bin/python bench/dashboard.py [--services 1000] [--entries 100000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from release.domain.config import DEFAULT_CONFIG_PATH, parse_config  # noqa: E402
from release.gitops.store import GitOpsStore, local_repo_url  # noqa: E402
from release.domain.registry import HISTORY_FILE, SCHEMA_VERSION, VERSIONS_FILE, Deployment, HistoryEntry, RegistryState  # noqa: E402
from release.gitops.registry import Registry  # noqa: E402
from release.releases.model import age, now_utc  # noqa: E402
from release.releases.source import ReleasesCache  # noqa: E402
from release.web import templates  # noqa: E402

ENVS = ["dev", "staging", "prod"]


def big_config(services: int):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    base = raw["services"]["service-a"]
    raw["services"] = {f"svc-{i:04d}": {**base, "path": f"services/svc-{i:04d}/", "chart": f"services/svc-{i:04d}",
                                        "image": f"registry.local:5000/release/svc-{i:04d}", "owners": [f"@team-{i % 40}"]}
                       for i in range(services)}
    return parse_config(yaml.safe_dump(raw), "bench")


def dump(data) -> str:
    # The registry's own layout (release.domain.registry.dump_yaml), with libyaml's emitter: same text, faster to make.
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=120)


def render(state: RegistryState) -> dict[str, str]:
    head = "# Written only by the release platform; every change is a commit. Do not edit by hand.\n"
    envs = {env: {svc: {k: v for k, v in asdict(d).items() if k != "service"} for svc, d in sorted(state.environments.get(env, {}).items())}
            for env in ENVS}
    return {VERSIONS_FILE: head + dump({"schema_version": SCHEMA_VERSION, "environments": envs}),
            HISTORY_FILE: head + dump({"schema_version": SCHEMA_VERSION, "entries": [asdict(e) for e in state.entries]})}


def build_state(config, entries: int) -> RegistryState:
    rng = random.Random(15)
    names = list(config.services)
    t = datetime(2026, 6, 1, tzinfo=timezone.utc)
    step = timedelta(days=180) / entries
    state = RegistryState({env: {} for env in ENVS}, [])
    versions = {n: 0 for n in names}
    for i in range(entries):
        t += step
        at = t.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        service = names[rng.randrange(len(names))]
        env = ENVS[min(2, int(rng.random() * 3))]
        versions[service] += env == "dev"
        version = f"1.{versions[service]}.0"
        image = f"{config.services[service].image}@sha256:{rng.getrandbits(256):064x}"
        evidence = {"commit": f"{rng.getrandbits(160):040x}", "commit_time": at, "ref": f"refs/tags/v{version}",
                    "scan": {"passed": True, "counts": {"CRITICAL": 0, "HIGH": rng.randrange(3)}, "blocking": []},
                    "signature": {"signed": True}, "smoke": {"passed": True, "run_id": f"run-{i}"},
                    "deploy_run": f"deploy-{env}/run-{i}"}
        previous = state.environments[env].get(service)
        outcome = "failed" if rng.random() < 0.03 else "deployed"
        state.entries.append(HistoryEntry(i + 1, env, service, version, image, previous.version if previous else None,
                                          "deploy", outcome, at, "alice", f"run-{i}", "", evidence))
        state.environments[env][service] = Deployment(service, version, image, at, "alice", f"run-{i}", evidence)
    return state


def commit(work: Path, state: RegistryState, message: str) -> None:
    for name, text in render(state).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm",
                    message], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)


def page_times(cache: ReleasesCache, service: str) -> tuple[float, float]:
    """Seconds for the matrix page and a service page, as the endpoints build them."""
    t0 = time.perf_counter()
    view = cache.load().view
    templates.render("matrix.html", ui="", now=now_utc(), view=view, m=view.matrix(), name="", owner="", blocking=False,
                     user="bench", age=age)
    t1 = time.perf_counter()
    view = cache.load().view
    s = view.service(service)
    templates.render("service.html", ui="", now=now_utc(), view=view, s=s, user="bench", age=age,
                     timeline=templates.timeline_svg(s["entries"], view.envs))
    return t1 - t0, time.perf_counter() - t1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    config = big_config(args.services)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        state = build_state(config, args.entries)
        bare, work = tmp / "gitops.git", tmp / "work"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
        subprocess.run(["git", "-C", str(work), "checkout", "-q", "-b", "main"], check=True)
        commit(work, state, "registry")
        size = (work / HISTORY_FILE).stat().st_size
        print(f"{args.services} services x {len(ENVS)} environments, {len(state.entries)} history entries "
              f"(history.yaml {size / 1e6:.1f} MB); set up in {time.perf_counter() - t0:.1f} s")

        store = GitOpsStore(local_repo_url(bare), "main")
        # What `registry show` does for the same data: clone, strict parse of both files, the table's data.
        t = time.perf_counter()
        snap = Registry(store, config).snapshot()
        _ = {env: {s: (d.summary() if (d := snap.current(env).get(s)) else None) for s in config.services} for env in ENVS}
        show = time.perf_counter() - t

        service = state.entries[-1].service
        cache = ReleasesCache(config, store, tmp / "mirror.git", ttl_seconds=2.0)
        cold_matrix, cold_service = page_times(cache, service)
        first_load = cache.load().load_seconds
        warm = [page_times(cache, service) for _ in range(20)]
        warm_matrix = statistics.median(w[0] for w in warm)
        warm_service = statistics.median(w[1] for w in warm)
        cache.ttl_seconds = 0  # every view asks the remote for the tip again
        asked = [page_times(cache, service) for _ in range(10)]
        asked_matrix = statistics.median(a[0] for a in asked)
        cache.ttl_seconds = 2.0

        # A deployment lands: one entry appended, the replaced one's evidence unchanged, the tip moves.
        state.deploy("prod", state_request(config, state, service), by="bob", run_id="new-run")
        commit(work, state, "deploy")
        cache.head(force=True)
        new_matrix, new_service = page_times(cache, service)
        loaded = cache.load()

        def ms(s: float) -> str:
            return f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"

        print(f"registry show (clone + parse + table data):          {ms(show)}")
        print(f"matrix page   cold, first load:  {ms(cold_matrix):>8}  (registry read {ms(first_load)})   ratio to registry show {cold_matrix / show:.2f}")
        print(f"matrix page   cold, new commit:  {ms(new_matrix):>8}  ({loaded.parsed_entries} entries parsed)   ratio {new_matrix / show:.3f}")
        print(f"matrix page   warm (cached):     {ms(warm_matrix):>8}   ratio {warm_matrix / show:.4f}")
        print(f"matrix page   warm, tip asked:   {ms(asked_matrix):>8}   (git ls-remote each view)")
        print(f"service page  cold, first load:  {ms(cold_service):>8}  (after the matrix: the model is cached)")
        print(f"service page  cold, new commit:  {ms(new_service):>8}")
        print(f"service page  warm (cached):     {ms(warm_service):>8}")
        goals = {"warm <= 50 ms": max(warm_matrix, warm_service) <= 0.05, "cold (new commit) <= 1 s": new_matrix <= 1.0,
                 "cold (first load) <= 1 s": cold_matrix <= 1.0}
        print("goals: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in goals.items()))
    return 0


def state_request(config, state: RegistryState, service: str):
    from release.domain.registry import DeployRequest

    current = state.environments["staging"].get(service) or next(iter(state.environments["dev"].values()))
    return DeployRequest(service, current.version, current.image, dict(current.evidence))


if __name__ == "__main__":
    sys.exit(main())
