"""`momento`: one entry point for every program (see the README and design card)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
from pathlib import Path
from typing import cast

from cli.engines import add_engine_arguments, choice_of
from cli.processes import become, cockpit_command, cockpit_refusal, exit_on_sigterm
from momento.lake.location import LocationError
from momento.settings import PROJECT_ROOT, Settings, SettingsError, load_settings

BENCH_DIR = PROJECT_ROOT / "bench"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momento", description="Real-time personalisation you can measure.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="backfill if the lake is empty, then service + simulator + cockpit")
    demo.add_argument("--days", type=int, default=28, help="days of history to backfill when the lake is empty")
    demo.add_argument("--users", type=int, default=None, help="users to backfill (default: the scenario's)")
    demo.add_argument("--rate", type=float, default=5.0, help="live sessions per second")
    demo.add_argument("--port", type=int, default=None, help="service port")
    demo.add_argument("--cockpit-port", type=int, default=None, help="cockpit port")

    serve = sub.add_parser("serve", help="run the decisioning service")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)

    simulate = sub.add_parser("simulate", help="drive the running service with live traffic")
    simulate.add_argument("--url", default=None, help="the service (default MOMENTO_SERVICE_URL)")
    simulate.add_argument("--rate", type=float, default=5.0, help="sessions per second")
    simulate.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--seed", type=int, default=None)
    simulate.add_argument(
        "--users",
        type=int,
        default=None,
        help="the population to draw from (default: the scenario's; match the backfill's)",
    )
    simulate.add_argument("--incident", action="append", default=[], help="switch an incident on (repeatable)")

    backfill = sub.add_parser("backfill", help="write N days of history straight into the lake")
    backfill.add_argument("--days", type=int, default=28)
    backfill.add_argument("--users", type=int, default=None)
    backfill.add_argument("--seed", type=int, default=7)

    rollup = sub.add_parser("rollup", help="bring the lake's rollups up to date (once, or --follow)")
    rollup.add_argument("--follow", action="store_true", help="keep up with the lake until stopped")
    rollup.add_argument("--interval", type=float, default=2.0, help="seconds between runs with --follow")
    rollup.add_argument(
        "--release-lock",
        action="store_true",
        help="give back the rollup lock of a lake on object storage left by a job that died on another host",
    )
    add_engine_arguments(rollup)

    analyze_lake = sub.add_parser(
        "analyze-lake",
        help="every experiment's per-arm statistics and analysis, reduced from the lake's raw rows, as JSON",
    )
    analyze_lake.add_argument("--experiment", default=None, help="that experiment alone")
    add_engine_arguments(analyze_lake)

    watch = sub.add_parser("watch", help="evaluate the monitors every few seconds: alerts, webhook, arm pauses")
    watch.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between evaluations (default: the monitors file's interval_s)",
    )
    watch.add_argument(
        "--monitors", type=Path, default=None, help="the monitors file (default: monitors.toml next to the scenario)"
    )
    watch.add_argument(
        "--metrics-port", type=int, default=8002, help="loopback port of the watcher's /metrics (0: none)"
    )

    cockpit = sub.add_parser("cockpit", help="run the Streamlit cockpit")
    cockpit.add_argument("--port", type=int, default=None)

    analyze = sub.add_parser("analyze", help="the statistics engine over aggregated numbers (JSON in, JSON out)")
    analyze.add_argument(
        "--jsonl",
        action="store_true",
        help="one request per line in, one answer per line out (exit 2 if any line was invalid)",
    )

    sql = sub.add_parser("sql", help="how the cockpit computes a metric: its definition, its SQL, the method")
    sql.add_argument("metric", help="a metric of the KPI catalogue (momento/kpis.py), e.g. arpu or latency_p50_p95_p99")
    sql.add_argument("--experiment", default=None, help="that experiment's statistics of the metric alone")
    sql.add_argument(
        "--page",
        default=None,
        help="the cockpit page whose panel to show (default: the first that "
        "shows the metric): executive, journeys, experiments, "
        "engine_health, governance, policy_lab",
    )

    importing = sub.add_parser("import", help="load another system's logs into the lake")
    kinds = importing.add_subparsers(dest="kind", required=True)
    bandit = kinds.add_parser(
        "bandit-log",
        help="logged bandit feedback in the Open Bandit Dataset layout (CSV or "
        "Parquet) as decisions, exposures and clicks, for the Policy lab",
    )
    bandit.add_argument("file", type=Path)
    bandit.add_argument("--campaign", required=True, help="the experience the decisions are logged under")
    bandit.add_argument("--policy", required=True, help="the name of the policy that logged them")

    bench = sub.add_parser("bench", help="run the benchmarks in bench/ and print their tables")
    bench.add_argument("name", nargs="?", default=None, help="one benchmark (file name without .py)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")
    return parser


def _run_bench(name: str | None, args: list[str]) -> int:
    names = [name] if name else sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))
    status = 0
    for bench_name in names:
        path = BENCH_DIR / f"{bench_name}.py"
        if not path.is_file():
            print(f"momento bench: no benchmark named {bench_name!r} in {BENCH_DIR}", file=sys.stderr)
            return 2
        spec = importlib.util.spec_from_file_location(f"bench_{bench_name}", path)
        assert spec is not None and spec.loader is not None  # a .py file has both
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        print(f"== bench/{bench_name}.py")
        status = max(status, module.main(args))
    return status


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one program; returns the exit code."""
    exit_on_sigterm()  # backfill, bench, analyze: their `finally` blocks stop what they started
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"momento: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, settings)
    except LocationError as exc:  # an object store out of reach, or a local-only command on one
        print(f"momento {args.command}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """The program `args` names, on `settings`."""
    if args.command == "analyze":
        from metrics.analyze import main as analyze
        from metrics.analyze import main_jsonl

        # typeshed types the buffer as BinaryIO; it is a buffered reader (with read1)
        return (
            main_jsonl(cast(io.BufferedIOBase, sys.stdin.buffer), sys.stdout)
            if args.jsonl
            else analyze(sys.stdin, sys.stdout)
        )
    if args.command == "bench":
        return _run_bench(args.name, args.args)
    if args.command == "sql":
        from metrics.queries import sql_command

        return sql_command(settings, args.metric, sys.stdout, sys.stderr, experiment=args.experiment, page=args.page)
    if args.command == "import":
        from cli.importing import run_import_bandit_log

        return run_import_bandit_log(settings, args.file, args.campaign, args.policy, sys.stdout, sys.stderr)
    if args.command == "serve":
        from decisioning.runner import serve

        return serve(settings, host=args.host or settings.host, port=args.port or settings.port)
    if args.command == "simulate":
        from decisioning.simulator.live import run_live

        return run_live(
            settings,
            url=args.url or settings.service_url,
            rate=args.rate,
            duration=args.duration,
            seed=args.seed,
            incidents=args.incident,
            users=args.users,
        )
    if args.command == "backfill":
        from decisioning.simulator.backfill import run_backfill

        return run_backfill(settings, days=args.days, users=args.users, seed=args.seed)
    if args.command == "rollup":
        from cli.rollup import release_lock, run_rollup

        if args.release_lock:
            return release_lock(settings)
        return run_rollup(settings, follow=args.follow, interval=args.interval, choice=choice_of(args))
    if args.command == "analyze-lake":
        from cli.analyze_lake import run_analyze_lake

        return run_analyze_lake(settings, choice_of(args), args.experiment, sys.stdout, sys.stderr)
    if args.command == "watch":
        from cli.watch import run_watch

        return run_watch(settings, args.monitors, args.interval, args.metrics_port)
    if args.command == "cockpit":
        refusal = cockpit_refusal(settings)
        if refusal:
            print(f"momento cockpit: {refusal}", file=sys.stderr)
            return 2
        become(cockpit_command(settings.cockpit_host, args.port or settings.cockpit_port))
    if args.command == "demo":
        from cli.demo import run_demo

        return run_demo(settings, args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
