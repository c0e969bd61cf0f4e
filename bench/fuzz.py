"""Fuzz the real service with requests generated from its own OpenAPI schema (>= 10,000 by default).

Starts `momento serve` on a free loopback port with a temporary lake (rate limits raised so the
limiter does not answer for the service), reads `/openapi.json` with schemathesis and, for every
operation, has Hypothesis draw schema-valid (`positive`) and schema-breaking (`negative`: wrong
types, missing or unknown fields, values out of range) requests; plus decisions whose
placements come from the catalogue (so the engine itself runs, not only validation), and the
stateful chain the links between operations describe: identify an anonymous visitor as a
customer, decide for the anonymous id (the customer's profile), then erase the customer. Each
request is sent with a 10 s timeout. It asserts no 5xx, no timeout, an error body on every 4xx,
`/healthz` ok afterwards and the last-resort handler never run, and prints a table per
operation and mode.

    python bench/fuzz.py [--examples 650] [--quick]   # --quick: 40 per operation and mode
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cli.processes import exit_on_sigterm, free_loopback_port, service_command, wait_until_healthy  # noqa: E402
from momento.scenario import load_scenario  # noqa: E402
from momento.settings import load_settings  # noqa: E402

REQUEST_TIMEOUT = 10.0
TIMEOUT = -1  # the status recorded for a request that got no answer in time
Tally = Counter[tuple[str, str, int]]  # (operation, mode, status) -> requests


def _record(tally: Tally, failures: list[str], operation: str, mode: str, response: httpx.Response | None) -> None:
    status = TIMEOUT if response is None else response.status_code
    tally[(operation, mode, status)] += 1
    if response is None:
        failures.append(f"{operation} [{mode}]: no answer within {REQUEST_TIMEOUT:.0f} s")
    elif status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        failures.append(f"{operation} [{mode}] -> {status}: {response.text[:300]}")
    elif status >= HTTPStatus.BAD_REQUEST:
        try:
            body = response.json()
            ok = bool(body.get("error")) and bool(body.get("reason"))
        except ValueError:
            ok = False
        if not ok:
            failures.append(f"{operation} [{mode}] -> {status} without an error body: {response.text[:300]}")


def _call(case: Any, url: str) -> httpx.Response | None:
    try:
        return case.call(base_url=url, timeout=REQUEST_TIMEOUT)
    except Exception:  # a timeout or a dropped connection: recorded as no answer
        return None


def _run(strategy: Any, examples: int, check: Any) -> None:
    """Draw up to `examples` cases from `strategy` and hand each to `check` (no shrinking:
    `check` records failures instead of raising, so every case is counted)."""

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        check(case)

    run()


class Fuzz:
    """One fuzzing run against the service at `url`: what was sent, what failed."""

    def __init__(self, url: str, examples: int) -> None:
        self.url, self.examples = url, examples
        self.schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        self.known = st.sampled_from(sorted(load_scenario(load_settings().scenario).experience_by_placement))
        self.tally: Tally = Counter()
        self.failures: list[str] = []

    def send(self, case: Any, operation: str, mode: str) -> httpx.Response | None:
        response = _call(case, self.url)
        _record(self.tally, self.failures, operation, mode, response)
        return response

    def operations(self) -> None:
        """Every operation of the schema, schema-valid and (where there is input) schema-breaking."""
        for result in self.schema.get_all_operations():
            operation = result.ok()
            name = f"{operation.method.upper()} {operation.path}"
            has_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_input else [GenerationMode.POSITIVE]
            for mode in modes:
                _run(
                    operation.as_strategy(generation_mode=mode),
                    self.examples,
                    lambda case, n=name, m=str(mode.value): self.send(case, n, m),
                )
            if not has_input:  # one possible request: Hypothesis draws it once, so send it as often
                case = operation.as_strategy().example()
                for _ in range(self.examples - sum(v for k, v in self.tally.items() if k[0] == name)):
                    self.send(case, name, "positive")

    def catalogue(self) -> None:
        """Decisions whose placements are the catalogue's, so the engine runs, not only validation."""

        def with_known_placements(case: Any, one: str, several: list[str]) -> Any:
            if isinstance(case.body, dict):
                case.body.update({"placement": one} if "placement" in case.body else {})
                case.body.update({"placements": several} if "placements" in case.body else {})
            return case

        decide = self.schema["/v1/decide"]["POST"].as_strategy()
        _run(
            st.builds(with_known_placements, decide, self.known, st.lists(self.known, min_size=1, max_size=8)),
            self.examples,
            lambda case: self.send(case, "POST /v1/decide", "catalogue placements"),
        )

    def chains(self) -> None:
        """identify -> decide (for the anonymous id, so through the link) -> erase the customer."""

        def chain(cases: tuple[Any, Any, Any, str]) -> None:
            link, decision, erasure, placement = cases
            answer = self.send(link, "POST /v1/identify", "chain")
            if answer is None or answer.status_code != HTTPStatus.OK or not isinstance(decision.body, dict):
                return
            decision.body.update(placement=placement, anonymous_id=link.body["anonymous_id"])
            decision.body.pop("placements", None)
            decision.body.pop("user_id", None)
            self.send(decision, "POST /v1/decide", "chain")
            erasure.path_parameters = {"user_id": link.body["user_id"]}
            self.send(erasure, "DELETE /v1/users/{user_id}", "chain")

        schema = self.schema
        _run(
            st.tuples(
                schema["/v1/identify"]["POST"].as_strategy(),
                schema["/v1/decide"]["POST"].as_strategy(),
                schema["/v1/users/{user_id}"]["DELETE"].as_strategy(),
                self.known,
            ),
            self.examples,
            chain,
        )


def _table(tally: Tally) -> list[str]:
    rows = sorted({key[:2] for key in tally})
    lines = [f"{'operation':<30} {'mode':<22} {'cases':>7} {'2xx':>6} {'4xx':>6} {'5xx':>5} {'no answer':>9}"]
    for operation, mode in rows:
        counts = {status: n for (o, m, status), n in tally.items() if (o, m) == (operation, mode)}
        total = sum(counts.values())
        by_class = Counter("none" if s == TIMEOUT else f"{s // 100}xx" for s, n in counts.items() for _ in range(n))
        lines.append(
            f"{operation:<30} {mode:<22} {total:>7,} {by_class['2xx']:>6,} {by_class['4xx']:>6,} "
            f"{by_class['5xx']:>5,} {by_class['none']:>9,}"
        )
    lines.append(f"{'total':<30} {'':<22} {sum(tally.values()):>7,}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=650, help="cases per operation and mode")
    parser.add_argument("--quick", action="store_true", help="40 cases per operation and mode")
    args = parser.parse_args(argv)
    examples = 40 if args.quick else args.examples
    with tempfile.TemporaryDirectory(prefix="momento-fuzz-") as tmp:
        port = free_loopback_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MOMENTO_")},
            "MOMENTO_LAKE": str(Path(tmp) / "lake"),
            "MOMENTO_FLUSH_SECONDS": "0.2",
            "MOMENTO_RATE_LIMIT_PER_SECOND": "1000000",
            "MOMENTO_RATE_LIMIT_BURST": "1000000",
        }
        log = (Path(tmp) / "service.log").open("w")
        process = subprocess.Popen(
            service_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until_healthy(url, process)
            started = time.monotonic()
            run = Fuzz(url, examples)
            run.operations()
            run.catalogue()
            run.chains()
            tally, failures = run.tally, run.failures
            elapsed = time.monotonic() - started
            health = httpx.get(f"{url}/healthz", timeout=REQUEST_TIMEOUT)
            metrics = httpx.get(f"{url}/metrics", timeout=REQUEST_TIMEOUT).text
        finally:
            process.terminate()
            process.wait(timeout=60)
            log.close()
    unexpected = sum(
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("momento_unexpected_errors_total")
    )
    print("\n".join(_table(tally)))
    print(
        f"\n{sum(tally.values()):,} requests in {elapsed:.0f} s; /healthz afterwards: {health.status_code} "
        f"{health.json().get('status')}; last-resort handler ran {unexpected:.0f} times; service exit code "
        f"{process.returncode}"
    )
    for failure in failures[:20]:
        print("FAILURE:", failure)
    ok = not failures and health.status_code == HTTPStatus.OK and unexpected == 0
    print("verdict:", "0 5xx, no timeout, every 4xx with its reason" if ok else f"{len(failures)} failures")
    return 0 if ok else 1


if __name__ == "__main__":
    exit_on_sigterm()  # a plain `kill` stops what the benchmark started
    sys.exit(main())
