"""`python -m release ...`: the platform's command line for operators and `make`."""

from __future__ import annotations

import argparse
from datetime import datetime
import sys
from pathlib import Path


def _config_check(args) -> int:
    from release.domain.config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.codeowners:
        from release.github.codeowners import check_file

        try:
            disagreements, problems = check_file(config, args.codeowners)
        except OSError as exc:
            print(f"--codeowners: cannot read {args.codeowners}: {exc.strerror}", file=sys.stderr)
            return 1
        for line in [*problems, *(d.describe() for d in disagreements)]:
            print(line, file=sys.stderr)
        if disagreements:
            return 1
    print("OK")
    return 0


def _registry(config):
    """The registry the config names; a local repository that was never created is said so at once."""
    from release.gitops.store import GitOpsError, default_repo_path
    from release.gitops.registry import Registry

    if not config.gitops.url and not (default_repo_path() / "HEAD").exists():
        raise GitOpsError(f"no GitOps repository at {default_repo_path()}; create it with "
                          "`python -m release gitops init` (make run does)")
    return Registry.from_config(config)


def _registry_show(args) -> int:
    from release.domain.config import load_config

    config = load_config()
    envs = [args.env] if args.env else config.env_order
    if args.env and args.env not in config.environments:
        print(f"--env: unknown environment {args.env!r}; allowed: {', '.join(config.env_order)}", file=sys.stderr)
        return 2
    state = _registry(config).snapshot()
    if args.format == "json":
        # {env: {service: SHOW_KEYS or null when not deployed}}, environments in promotion order
        _print_json({env: {service: (d.summary() if (d := state.current(env).get(service)) else None)
                           for service in config.services} for env in envs})
        return 0
    from tabulate import tabulate

    rows = []
    for service in config.services:
        row = [service]
        for env in envs:
            d = state.current(env).get(service)
            approved = f"\napproved by {d.approved_by}" if d and d.approved_by else ""
            row.append(f"{d.version} ({d.image.rsplit('@', 1)[-1][:19]})\n{d.deployed_at} by {d.deployed_by}{approved}"
                       if d else "-")
        rows.append(row)
    print(tabulate(rows, headers=["service", *envs], tablefmt="simple_grid"))
    return 0


def _registry_read(command):
    """A registry command that explains, and exits 1, when the registry cannot be read: a file
    broken by a hand edit (which file, which line, what) or an unreachable GitOps remote."""
    def run(args) -> int:
        from release.gitops.store import GitOpsError
        from release.domain.registry import RegistryFileError

        try:
            return command(args)
        except (RegistryFileError, GitOpsError) as exc:
            print(f"cannot read the registry: {exc}", file=sys.stderr)
            return 1

    return run


def _print_json(data) -> None:
    import json

    print(json.dumps(data, indent=2))


def _iso_time(text: str) -> str:
    """argparse check: a bad --since/--until exits 2 naming the option, not with a traceback."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time, e.g. 2026-11-01 or 2026-11-01T02:00:00Z") from None
    return text


def _registry_history(args) -> int:
    from release.domain.config import load_config

    entries = _registry(load_config()).history(
        service=args.service, env=args.env, since=args.since, until=args.until
    )
    if args.format == "json":
        _print_json([e.summary() for e in entries])  # HISTORY_KEYS per entry, oldest first
        return 0
    from tabulate import tabulate

    rows = [[e.id, e.at, e.env, e.service, e.previous_version or "-", e.version, e.action, e.outcome, e.by,
             e.approved_by or "-"] for e in entries]
    print(tabulate(rows, headers=["id", "at", "env", "service", "from", "to", "action", "outcome", "by", "approved by"]))
    return 0


def _gitops_init(args) -> int:
    from release.domain.config import load_config
    from release.gitops.store import default_repo_path
    from release.gitops.registry import ensure_local_repo

    config = load_config()
    if config.gitops.url:
        print(f"GitOps repository: {config.gitops.url} (remote; nothing to create)")
        return 0
    created = ensure_local_repo(config)
    print(f"GitOps repository: {default_repo_path()} ({'created from the template' if created else 'exists'})")
    return 0


def _sandbox(args) -> int:
    import signal
    import threading

    from release.domain.config import ConfigError, data_dir, load_config
    from sandbox import SANDBOX_LABEL, SandboxCluster, Scenario
    from sandbox.seed import prepare

    try:
        config = load_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    namespaces = tuple(e.namespace for e in config.environments.values())
    scenario = Scenario.load(args.scenario) if args.scenario else None
    root = data_dir() / "sandbox"
    cluster = SandboxCluster(scenario, port=args.port, namespaces=namespaces,
                             artifacts_dir=data_dir() / "artifacts", backup_storage_dir=root / "backup-storage")
    cluster.start()
    from sandbox.github import mode as github_sandbox

    github = github_sandbox.start(config, port=args.github_port)
    # What the clusters already hold (Applications, the scenario's earlier backups), before the
    # kubeconfig tells anyone the sandbox is there.
    seeded = prepare(cluster, config)
    kubeconfig = cluster.write_kubeconfig(args.kubeconfig or root / "kubeconfig")
    if seeded:
        print(f"Earlier Completed backups (scenario prior_backups): {', '.join(seeded)}")
    print(f"{SANDBOX_LABEL}\nAPI server: {cluster.url}\nkubeconfig: {kubeconfig}\n"
          f"  export KUBECONFIG={kubeconfig}   # kubectl and the kubernetes client use it as is", flush=True)
    if github is not None:
        print(f"GitHub stand-in for {config.github.repository}: {github.url} (what it was sent: {github.url}/_github/state)")
    print("Ctrl-C stops it.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    github_sandbox.stop(github)
    cluster.stop()
    return 0


def _cluster_status(args) -> int:
    from release.domain.config import load_config
    from sandbox.mode import real_cluster_reason

    reason = real_cluster_reason(load_config())
    print(f"real cluster configured: {reason}" if reason else "no cluster configured")
    return 0 if reason else 3


def _cluster_sandbox_env(args) -> int:
    from release.domain.config import load_config
    from sandbox.mode import sandbox_environment, shell_exports

    print(shell_exports(sandbox_environment(load_config(), args.kubeconfig.resolve())))
    return 0


def _pools_sync(args) -> int:
    """Create or resize the Airflow pools the config asks for (the metadata DB must exist)."""
    from airflow.models.pool import Pool

    from release.k8s import steps
    from release.domain.config import load_config

    config = load_config()
    # Build, scan and helm pods wait deferred (in the triggerer), so every pool counts deferred
    # tasks; otherwise a pool of 4 would let any number of builds run at once.
    pools = [("builds", config.pipelines.builds_pool_slots, "image builds across all service pipelines"),
             ("rescans", config.nightly.rescan.pool_slots, "Trivy scans of the nightly image-rescan at once")]
    pools += [(steps.helm_pool(env), 1, f"helm upgrades of the {env} release, one at a time")
              for env, e in config.environments.items() if e.deploy_strategy == "helm"]
    for name, slots, description in pools:
        Pool.create_or_update_pool(name, slots, description, include_deferred=True)
        print(f"pool {name}: {slots} slots")
    return 0


def _affected(args) -> int:
    import json

    from release.domain.affected import AffectedIndex, validate_paths
    from release.domain.config import load_config

    text = sys.stdin.read() if str(args.paths_file) == "-" else args.paths_file.read_text(encoding="utf-8")
    try:
        paths = validate_paths([line for line in text.splitlines() if line.strip()])
    except ValueError as exc:
        print(f"--paths-file: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(AffectedIndex.from_config(load_config()).affected(paths)))
    return 0


def _backups(args) -> int:
    from tabulate import tabulate

    from release.domain.backups import read_records
    from release.domain.config import load_config

    config = load_config()
    if args.env and args.env not in config.environments:
        print(f"--env: unknown environment {args.env!r}; allowed: {', '.join(config.env_order)}", file=sys.stderr)
        return 2
    backups = read_records(config, "backups", args.env)[-args.last:]
    print(tabulate([[r["env"], r["name"], r["phase"] + (" (timed out)" if r["timed_out"] else ""), r["started"] or "-",
                     r["completed"] or "-", r["items_backed_up"], r["errors"], r["warnings"]] for r in backups],
                   headers=["env", "backup", "phase", "started", "completed", "items", "errors", "warnings"]))
    drills = read_records(config, "drills", args.env)[-args.last:]
    if drills:
        print()
        print(tabulate([[r["env"], r["recorded_at"], r["backup"] or "-", "yes" if r["restored"] else "NO",
                         "yes" if r["smoke_passed"] else "NO",
                         f"{r['recovery_seconds']:.0f}s" if r["recovery_seconds"] is not None else "-",
                         "; ".join(r["problems"]) or "-"] for r in drills],
                       headers=["env", "drill at", "backup", "restored", "smoke passed", "recovery", "problems"]))
    return 0


def _metrics_dora(args) -> int:
    from release.domain import dora
    from release.domain.config import load_config

    config = load_config()
    if args.env not in config.environments:
        print(f"--env: unknown environment {args.env!r}; allowed: {', '.join(config.env_order)}", file=sys.stderr)
        return 2
    if args.service is not None and args.service not in config.services:
        print(f"--service: unknown service {args.service!r}; allowed: {', '.join(config.services)}", file=sys.stderr)
        return 2
    entries = _registry(config).snapshot().entries
    start, end = dora.window(args.days, dora.parse_time(args.now) if args.now else datetime.now().astimezone())
    figures = dora.compute(entries, args.env, start, end, service=args.service)
    if args.format == "json":
        _print_json(figures.to_dict())
        return 0
    rate = f"{figures.change_fail_rate:.0%}" if figures.change_fail_rate is not None else "-"
    print(f"DORA metrics for {args.service or 'all services'} in {args.env}, {figures.start} to {figures.end} ({args.days} days)")
    from tabulate import tabulate

    print(tabulate([
        ["deployment frequency", f"{figures.deployments} deployments ({figures.deployments_per_day:.2f} per day); "
                                 f"{figures.rollbacks} rollbacks"],
        ["change lead time", f"median {dora.human_duration(figures.lead_time_median_s)}, p90 "
                             f"{dora.human_duration(figures.lead_time_p90_s)} ({figures.lead_time_known} with a commit time)"],
        ["change fail rate", f"{rate} ({figures.failed_deployments} of {figures.deployments} rolled back)"],
        ["failed deployment recovery time", f"median {dora.human_duration(figures.recovery_median_s)} "
                                            f"({figures.recoveries} recovered)"],
    ], tablefmt="simple"))
    return 0


def _format_option(parser: argparse.ArgumentParser) -> None:
    # argparse refuses any other value with exit 2, naming --format and both choices.
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="table for people (default), json for scripts (keys listed in the README)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m release", description="Release platform commands")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="the platform config").add_subparsers(dest="action", required=True)
    check = config.add_parser("check", help="validate a platform config; prints OK or every error")
    check.add_argument("file", nargs="?", help="default: $RELEASE_PLATFORM_CONFIG or include/config/platform.yaml")
    check.add_argument("--codeowners", type=Path, metavar="FILE",
                       help="also report services whose owners disagree with this CODEOWNERS file (the app repo's)")
    check.set_defaults(func=_config_check)

    registry = sub.add_parser("registry", help="the version registry").add_subparsers(dest="action", required=True)
    show = registry.add_parser("show", help="services x environments: what runs where")
    show.add_argument("--env", help="only this environment")
    _format_option(show)
    show.set_defaults(func=_registry_read(_registry_show))
    history = registry.add_parser("history", help="deployments and rollbacks, oldest first")
    history.add_argument("--service")
    history.add_argument("--env")
    history.add_argument("--since", type=_iso_time, help="ISO-8601 time or date, UTC unless it says otherwise, e.g. 2026-11-01")
    history.add_argument("--until", type=_iso_time, help="ISO-8601 time or date")
    _format_option(history)
    history.set_defaults(func=_registry_read(_registry_history))

    metrics = sub.add_parser("metrics", help="delivery metrics").add_subparsers(dest="action", required=True)
    dora_cmd = metrics.add_parser("dora", help="DORA's four metrics (dora.dev definitions) from the registry's history")
    dora_cmd.add_argument("--env", required=True, help="the environment, usually prod")
    dora_cmd.add_argument("--days", type=int, choices=[7, 30, 90], default=30, help="the window: the last 7, 30 or 90 days")
    dora_cmd.add_argument("--service", help="only this service (default: all)")
    dora_cmd.add_argument("--now", type=_iso_time, help=argparse.SUPPRESS)  # the window's end (tests)
    _format_option(dora_cmd)
    dora_cmd.set_defaults(func=_registry_read(_metrics_dora))

    backups = sub.add_parser("backups", help="recorded Velero backups and restore drills, oldest first")
    backups.add_argument("--env", help="only this environment")
    backups.add_argument("--last", type=int, default=20, help="at most this many of each (default 20)")
    backups.set_defaults(func=_backups)

    gitops = sub.add_parser("gitops", help="the GitOps repository").add_subparsers(dest="action", required=True)
    init = gitops.add_parser("init", help="create the local GitOps repository from the template if missing")
    init.set_defaults(func=_gitops_init)
    cluster = sub.add_parser("cluster", help="which Kubernetes cluster the platform uses").add_subparsers(dest="action", required=True)
    status = cluster.add_parser("status", help="exit 0 if a real cluster is configured, 3 if not")
    status.set_defaults(func=_cluster_status)
    env = cluster.add_parser("sandbox-env", help="shell exports pointing every environment's connection at a sandbox")
    env.add_argument("--kubeconfig", type=Path, required=True)
    env.set_defaults(func=_cluster_sandbox_env)

    affected = sub.add_parser("affected", help="services a change affects, as a JSON list")
    affected.add_argument("--paths-file", type=Path, required=True, help="one changed path per line; - for stdin")
    affected.set_defaults(func=_affected)

    pools = sub.add_parser("pools", help="Airflow pools").add_subparsers(dest="action", required=True)
    pools.add_parser("sync", help="create or resize the pools named in the config").set_defaults(func=_pools_sync)

    sandbox = sub.add_parser("sandbox", help="run the simulated Kubernetes cluster in the foreground")
    sandbox.add_argument("--port", type=int, default=0, help="default: any free port")
    sandbox.add_argument("--kubeconfig", type=Path, help="where to write its kubeconfig (default .local/sandbox/kubeconfig)")
    sandbox.add_argument("--scenario", type=Path, help="YAML scenario: pod outcomes, Argo CD and Velero behaviour, faults")
    sandbox.add_argument("--github-port", type=int, default=0, help="port of the GitHub stand-in (default: any free port)")
    sandbox.set_defaults(func=_sandbox)

    from release.cli_github import add_commands as add_github_commands

    add_github_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
