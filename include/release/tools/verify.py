"""`python -m release.tools.verify`: the verify step, run inside the platform image by a pod.

Checks out the application repository at the commit, then runs the service's unit tests
with coverage, flake8 and pylint, each as an argument list. Writes a JSON summary to
/dev/termination-log (the task's result) and exits non-zero if any check fails, so a
failing test fails the task without a retry.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

TERMINATION_LOG = Path("/dev/termination-log")


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd), flush=True)
    # The repository root is on the path, as for the service's own imports in its tests.
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    sys.stdout.write(proc.stdout[-20000:])
    sys.stderr.write(proc.stderr[-5000:])
    return proc


def coverage_percent(output: str) -> float | None:
    m = re.search(r"^TOTAL\s+.*?(\d+(?:\.\d+)?)%\s*$", output, re.MULTILINE)
    return float(m.group(1)) if m else None


def pylint_score(output: str) -> float | None:
    m = re.search(r"rated at (-?\d+(?:\.\d+)?)/10", output)
    return float(m.group(1)) if m else None


def verify(workdir: Path, path: str, coverage_min: float, pylint_min: float) -> list[Check]:
    service = workdir / path
    tests = run([sys.executable, "-m", "pytest", "-q", f"--cov={service}", "--cov-report=term", str(service)], workdir)
    cov = coverage_percent(tests.stdout)
    lint = run([sys.executable, "-m", "flake8", str(service)], workdir)
    pylint = run([sys.executable, "-m", "pylint", f"--fail-under={pylint_min}", str(service)], workdir)
    score = pylint_score(pylint.stdout)
    return [
        Check("tests", tests.returncode == 0, f"pytest exit {tests.returncode}"),
        Check("coverage", cov is not None and cov >= coverage_min, f"{cov}% (minimum {coverage_min}%)"),
        Check("flake8", lint.returncode == 0, f"{len(lint.stdout.splitlines())} finding(s)"),
        Check("pylint", pylint.returncode == 0, f"score {score}/10 (minimum {pylint_min})"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m release.tools.verify")
    p.add_argument("--repo", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--coverage-min", type=float, default=70.0)
    p.add_argument("--pylint-min", type=float, default=8.0)
    p.add_argument("--workdir", type=Path, help="an existing checkout (skips the clone)")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[0-9a-f]{40}", args.commit) or ".." in Path(args.path).parts:
        print("verify: --commit must be 40 hex characters and --path inside the repository", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir
        if workdir is None:
            import git

            workdir = Path(tmp) / "src"
            repo = git.Repo.clone_from(args.repo, workdir, no_checkout=True)
            repo.git.checkout(args.commit)
        checks = verify(workdir, args.path, args.coverage_min, args.pylint_min)
    summary = {"passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks]}
    print(json.dumps(summary, indent=2))
    if TERMINATION_LOG.parent.exists() and TERMINATION_LOG.exists():
        TERMINATION_LOG.write_text(json.dumps(summary)[:4000])
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
