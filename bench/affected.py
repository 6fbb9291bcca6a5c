"""Affected-service computation at monorepo scale: AffectedIndex vs the naive loop.

2,000 services and 100,000 changed paths, generated with a fixed seed to look like a
real monorepo: most services in their own `services/<name>/` folder (some nested per
team), most watching `shared/**`, some a library or their team's `proto/<team>/**`, a
few rarer patterns (`*.md`, `**/openapi.yaml`) and a few `!` exclusions; changes mostly
under services/, plus docs, shared, libs, proto and top-level files.

The naive loop (every path x every service x its whole pathspec) needs minutes at full
size, so it runs on random samples of the same paths and is scaled linearly to the full
size (its cost is the same for every path); results are compared on those samples.

    .venv/bin/python bench/affected.py [--services 2000] [--paths 100000] [--sample 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from release.domain.affected import AffectedIndex, naive_affected, validate_paths  # noqa: E402

TARGET = 10.0
TEAMS = [f"team-{t}" for t in range(40)]
LIBS = [f"libs/{name}" for name in ("auth", "db", "http", "log", "metrics", "queue", "cache", "config",
                                    "crypto", "i18n", "money", "search", "storage", "tracing", "ui-kit")]
RARE = ["*.md", "docs/api/**/*.md", "**/openapi.yaml", "/Makefile", "ci/templates/*.yml", "**/*.proto",
        "tools/*/config.json", "deploy/*.env"]
EXT = [".py", ".py", ".go", ".go", ".ts", ".java", ".yaml", ".json", ".md", ".sql", "Dockerfile"]


def make_services(n: int, rng: random.Random) -> dict[str, tuple[str, list[str]]]:
    services = {}
    for i in range(n):
        name = f"svc-{i}"  # unpadded on purpose: svc-1, svc-12 and svc-123 share prefixes
        team = rng.choice(TEAMS)
        path = f"services/{name}/" if rng.random() < 0.8 else f"services/{team}/{name}/"
        watch = ["shared/**"] if rng.random() < 0.9 else []
        if rng.random() < 0.3:
            watch.append(f"{rng.choice(LIBS)}/**")
        if rng.random() < 0.15:
            watch.append(f"proto/{team}/**")
        if rng.random() < 0.03:
            watch.append(rng.choice(RARE))
        if watch and rng.random() < 0.01:
            watch.append("!shared/testdata/**")
        services[name] = (path, watch)
    return services


def _file(rng: random.Random, n: int) -> str:
    ext = rng.choice(EXT)
    return ext if ext == "Dockerfile" and rng.random() < 0.5 else f"f{n}{'' if ext == 'Dockerfile' else ext}"


def make_paths(services: dict, n: int, rng: random.Random, *, shared: bool) -> list[str]:
    """`n` distinct changed paths; `shared=False` is a change that leaves shared/ alone."""
    folders = [path for path, _ in services.values()]
    hot = rng.sample(folders, k=len(folders) // 5)  # a big change still touches a minority of services
    weights = [1 / (rank + 1) for rank in range(len(hot))]  # a few services change a lot
    kinds = ["service", "docs", "shared", "lib", "proto", "top"]
    mix = [85, 6, 4, 2, 1, 2] if shared else [90, 6, 0, 2, 0, 2]
    paths = []
    for i in range(n):
        kind = rng.choices(kinds, mix)[0]
        sub = "/".join(f"d{rng.randrange(8)}" for _ in range(rng.randrange(4)))
        leaf = f"{sub}/{_file(rng, i)}" if sub else _file(rng, i)
        if kind == "service":
            base = rng.choices(hot, weights)[0]
            paths.append(base + rng.choice(["src/", "tests/", "", "api/", "chart/"]) + leaf)
        elif kind == "docs":
            paths.append(f"docs/{rng.choice(['api', 'guides', 'adr', 'runbooks'])}/p{i}.md")
        elif kind == "shared":
            paths.append(f"shared/{rng.choice(['core', 'testdata', 'web', 'proto-gen'])}/{leaf}")
        elif kind == "lib":
            paths.append(f"{rng.choice(LIBS)}/{leaf}")
        elif kind == "proto":
            paths.append(f"proto/{rng.choice(TEAMS)}/v{i}.proto")
        else:
            paths.append(rng.choice([f"tools/t{i}/config.json", f".github/workflows/w{i}.yml",
                                     f"ci/templates/c{i}.yml", f"scripts/s{i}.sh"]))
    return paths


def timed(fn, *args, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1000, help="paths per naive sample")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    services = make_services(args.services, rng)
    watched = [w for _, watch in services.values() for w in watch]
    print(f"affected-set bench: {len(services):,} services, {args.paths:,} changed paths per scenario, seed {args.seed}")
    print(f"  services: {sum(p.count('/') > 2 for p, _ in services.values()):,} nested per team; "
          f"{watched.count('shared/**'):,} watch shared/**, {len(set(watched)):,} distinct patterns, "
          f"{sum(w.startswith('!') for w in watched)} with '!' exclusions")
    build, index = timed(AffectedIndex, services, repeat=3)
    print(f"index build: {build * 1000:.1f} ms (once per config)")

    ok, ratios = True, []
    for label, shared in (("mixed change, shared/ touched", True), ("services and docs only, shared/ untouched", False)):
        paths = make_paths(services, args.paths, rng, shared=shared)
        fast, result = timed(index.affected, paths, repeat=5)
        check, _ = timed(validate_paths, paths, repeat=3)
        # The naive loop on random samples of the same paths, minus its own set-up (compiling
        # one pathspec per service), then scaled to the full number of paths.
        setup, _ = timed(naive_affected, services, [], repeat=3)
        per_path, same = [], True
        for _ in range(2):
            sample = rng.sample(paths, args.sample)
            slow, expected = timed(naive_affected, services, sample)
            per_path.append((slow - setup) / len(sample))
            same &= index.affected(sample) == expected
        naive_full = setup + statistics.mean(per_path) * len(paths)
        ratio, ratio_built = naive_full / fast, naive_full / (fast + build)
        ratios.append(ratio_built)
        ok &= same and ratio_built >= TARGET
        print(f"scenario: {label}")
        print(f"  affected: {len(result):,} of {len(services):,} services")
        print(f"  AffectedIndex.affected: {fast * 1000:8.1f} ms (median of 5)")
        print(f"  validate_paths:         {check * 1000:8.1f} ms (webhook input check, not in the ratio)")
        print(f"  naive loop:             {naive_full:8.1f} s  (scaled from 2 x {args.sample:,}-path samples, "
              f"{statistics.mean(per_path) * 1e6:.0f} us per path)")
        print(f"  speed-up: {ratio:,.0f}x (query), {ratio_built:,.0f}x (index build + query)")
        print(f"  identical results on the samples: {'yes' if same else 'NO'}")
    print(f"target: >= {TARGET:.0f}x faster with identical results; worst speed-up {min(ratios):,.0f}x")
    print(f"target met: {'yes' if ok else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
