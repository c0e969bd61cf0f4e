"""`momento demo`: the whole system on one machine, live, in one command.

Backfills a history when the lake has no events, then starts the decisioning service, the
rollup job keeping the cockpit's rollups up to date, the monitors (`momento watch`: alerts and
arm pauses), the traffic simulator driving the service, and the cockpit, as child processes,
all keying user ids with the lake's own pseudonym key
(`cli.lake_secrets`); prints where to look; and on Ctrl-C (or when any child dies) stops them
all — the cockpit and the simulator first, the service last so its writer flushes what it holds.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

from cli.lake_secrets import demo_pseudonym_key
from cli.processes import cockpit_command, cockpit_refusal, wait_until_healthy
from momento.lake.warehouse import Warehouse
from momento.settings import PROJECT_ROOT, Settings

WATCH_METRICS_PORT = 8002
"""Where `momento watch` serves its own /metrics in the demo (none when the port is taken)."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A child in its own session: the terminal's Ctrl-C reaches only the demo, which then
    stops the children one by one, in order (a second SIGINT would make uvicorn skip its
    graceful shutdown and the writer's last flush)."""
    return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, start_new_session=True)


_stopping = threading.Event()


def _stop(processes: list[tuple[str, subprocess.Popen]]) -> None:
    """Stop the children in order. Signals from here on change nothing: a second Ctrl-C, or make
    passing its SIGTERM on to the demo, would otherwise break off the stop half-way and leave the
    service and simulator running (each child gets 20 s before it is killed)."""
    _stopping.set()
    for name, process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"momento demo: {name} did not stop in 20 s; killing it", file=sys.stderr)
                process.kill()
                process.wait()


def _stop_on_signals() -> None:
    """Ctrl-C, `kill` and a closed terminal all stop the demo the same orderly way (a shell that
    starts the demo in the background may even have set SIGINT to be ignored). Only the first
    signal interrupts: it marks the stop as begun before anything else can run."""

    def interrupt(signum: int, frame: object) -> None:
        if _stopping.is_set():
            return
        _stopping.set()
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run backfill (if needed), service, simulator and cockpit until Ctrl-C (or SIGTERM)."""
    _stop_on_signals()
    settings = replace(
        settings,
        port=args.port or settings.port,
        cockpit_port=args.cockpit_port or settings.cockpit_port,
    )
    url = f"http://{settings.host}:{settings.port}"
    refusal = cockpit_refusal(settings)
    if refusal:
        print(f"momento demo: {refusal}", file=sys.stderr)
        return 2
    for name, port in (("service", settings.port), ("cockpit", settings.cockpit_port)):
        if not _port_free(settings.host, port):
            print(
                f"momento demo: port {port} for the {name} is taken; pass --{'port' if name == 'service' else 'cockpit-port'} N",
                file=sys.stderr,
            )
            return 2

    has_history = bool(Warehouse(settings.lake).scalar("SELECT count(*) FROM events"))
    key, note = demo_pseudonym_key(settings.lake.path, settings.pseudonym_key, has_history)
    if note:
        print(f"momento demo: {note}", file=sys.stderr)
    settings = replace(settings, pseudonym_key=key)
    if not has_history:
        from decisioning.simulator.backfill import backfill
        from momento.scenario import load_scenario

        print(
            f"momento demo: the lake at {settings.lake} is empty; backfilling {args.days} days of history…", flush=True
        )
        backfill(
            settings.lake.path,
            load_scenario(settings.scenario),
            days=args.days,
            users=args.users,
            seed=7,
            pseudonym_key=settings.pseudonym_key,
        )

    env = {
        **os.environ,
        "MOMENTO_LAKE": str(settings.lake),
        "MOMENTO_SERVICE_URL": url,
        "MOMENTO_PSEUDONYM_KEY": settings.pseudonym_key,
    }
    python = [sys.executable, "-m", "cli.main"]
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        service = _spawn([*python, "serve", "--host", settings.host, "--port", str(settings.port)], env)
        children.append(("service", service))
        try:
            wait_until_healthy(url, service, timeout=60)
        except RuntimeError as exc:
            print(f"momento demo: {exc}; see its log above", file=sys.stderr)
            return 1
        rollup = _spawn([*python, "rollup", "--follow"], env)
        children.insert(0, ("rollup job", rollup))
        metrics_port = WATCH_METRICS_PORT if _port_free(settings.host, WATCH_METRICS_PORT) else 0
        watch = _spawn([*python, "watch", "--metrics-port", str(metrics_port)], env)
        children.insert(0, ("monitors", watch))
        simulator = _spawn([*python, "simulate", "--url", url, "--rate", str(args.rate)], env)
        children.insert(0, ("simulator", simulator))
        cockpit = _spawn(cockpit_command(settings.cockpit_host, settings.cockpit_port), env)
        children.insert(0, ("cockpit", cockpit))
        print(
            f"\nMomento is running.\n  cockpit:  http://{settings.cockpit_host}:{settings.cockpit_port}\n"
            f"  service:  {url}  (API docs {url}/docs, metrics {url}/metrics)\n"
            f"  monitors: the cockpit's Alerts page"
            f"{f' (metrics http://127.0.0.1:{metrics_port}/metrics)' if metrics_port else ''}\n"
            f"  lake:     {settings.lake}\nPress Ctrl-C to stop everything.\n",
            flush=True,
        )
        while all(process.poll() is None for _, process in children):
            time.sleep(0.5)
        dead = [name for name, process in children if process.poll() is not None]
        print(f"momento demo: {', '.join(dead)} stopped; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmomento demo: stopping…", flush=True)
        return 0
    finally:
        _stop(children)
