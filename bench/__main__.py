"""`python -m bench`: Coppertone against the mock directly and against LiteLLM.

    python -m bench            the full run (at most ~15 minutes)
    python -m bench --smoke    seconds: tiny counts, no LiteLLM, SQLite (the test suite runs it)

Prints the table and the targets of issue 5 and writes them to bench/results/latest.json
(and latest.md beside it).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench import report
from bench.procs import ROOT
from bench.suite import FULL, SMOKE, Run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a run of seconds, for the tests")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "latest.json", help="JSON file"
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    parser.add_argument("--no-local-model", action="store_true", help="skip the embedded model")
    parser.add_argument(
        "--servers", default="", help="comma-separated servers (uvicorn,uvicorn-workers,daphne)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=0, help="time budget (default 840, smoke 120)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the first server under the heaviest loads"
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.no_litellm:
        plan = replace(plan, litellm=False)
    if args.no_local_model:
        plan = replace(plan, local_model=False)
    if args.profile:
        plan = replace(plan, profile=True)
    if args.servers:
        plan = replace(plan, servers=tuple(s.strip() for s in args.servers.split(",")))
    budget = args.max_seconds or (120 if args.smoke else 840)
    run = Run(plan, args.out, budget)
    try:
        results = run.run()
    except KeyboardInterrupt:
        print("interrupted: everything the run started has been stopped", file=sys.stderr)
        return 130
    results.update(
        smoke=plan.smoke, machine=report.machine(), concurrencies=list(plan.concurrencies)
    )
    print()
    print(report.finish(results, args.out))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
