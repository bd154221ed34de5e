"""``python -m bench.faults``: run fault-injection scenarios and print (and write) the
table of figures for docs/reliability.md.

    .venv/bin/python -m bench.faults --quick              # every scenario, few rounds
    .venv/bin/python -m bench.faults --all --out faults.md  # the long run of issue 11
    .venv/bin/python -m bench.faults --scenario kill9 --db sqlite --rounds 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.common import machine_line
from bench.faults.common import Outcome, pg_reachable, run_cleanups

SCENARIOS = ("kill9", "replicas", "pgrestart", "diskfull", "fuzz", "flood")
#: rounds (or size) of each scenario: (quick, long)
SIZES = {
    "kill9": (5, 100),
    "replicas": (4, 50),
    "pgrestart": (1, 3),
    "diskfull": (1, 1),
    "fuzz": (500, 10_000),
    "flood": (1, 1),
}


def _plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    names = args.scenario or list(SCENARIOS)
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    plan: list[tuple[str, str, int]] = []
    for name in names:
        size = args.rounds or SIZES[name][0 if args.quick else 1]
        if name == "kill9":
            plan.extend(("kill9", db, size) for db in dbs)
        elif name in ("replicas", "pgrestart"):
            plan.append((name, "postgresql", size))
        else:
            plan.append((name, "sqlite", size))
    return plan


def _run(name: str, db: str, size: int, args: argparse.Namespace) -> Outcome:
    import importlib

    module = importlib.import_module(f"bench.faults.{'kill9' if name == 'replicas' else name}")
    runners: dict[str, Callable[[], Outcome]] = {
        "kill9": lambda: module.run_kill9(db, size),
        "replicas": lambda: module.run_replicas(size, lease_ttl_s=args.lease_ttl),
        "pgrestart": lambda: module.run_pgrestart(
            [2.0, 10.0, 20.0][:size] if size <= 3 else [10.0] * size
        ),
        "diskfull": lambda: module.run_diskfull(full_s=10 if args.quick else 30),
        "fuzz": lambda: module.run_fuzz(size),
        "flood": lambda: module.run_flood(quick=args.quick),
    }
    outcome: Outcome = runners[name]()
    return outcome


def render(outcomes: list[Outcome], header: str) -> str:
    """The Markdown table of every figure, then the notes."""
    lines = [header, "", "| scenario | db | figure | result | target | met? |", "| --- " * 6 + "|"]
    for o in outcomes:
        for f in o.figures:
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            value = f.value.replace("|", "\\|")
            lines.append(f"| {f.scenario} | {f.db} | {f.figure} | {value} | {f.target} | {met} |")
    notes = [(o, n) for o in outcomes for n in o.notes]
    if notes:
        lines += ["", "Observations:", ""]
        lines += [f"- {o.scenario} ({o.db}): {n}".replace("\n", " ") for o, n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeatable")
    parser.add_argument("--all", action="store_true", help="every scenario, long form")
    parser.add_argument("--quick", action="store_true", help="every scenario, short form")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both",
                        help="database of the kill9 scenario (default both)")  # fmt: skip
    parser.add_argument("--rounds", type=int, help="rounds (fuzz: generated requests)")
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=6.0,
        help="lease TTL of the replicas scenario (default 6 s; jobyard's own default: 45)",
    )
    parser.add_argument(
        "--out", type=Path, help="write the table to OUT.md and everything to OUT.json"
    )
    args = parser.parse_args(argv)
    plan = _plan(args)
    reason = pg_reachable()
    if reason and any(db == "postgresql" and n != "pgrestart" for n, db, _ in plan):
        print(f"faults: {reason}; PostgreSQL runs skipped", file=sys.stderr)
        plan = [p for p in plan if p[1] != "postgresql" or p[0] == "pgrestart"]
    header = f"Fault injection: {machine_line()}"
    print(header, flush=True)
    outcomes: list[Outcome] = []
    try:
        for name, db, size in plan:
            started = time.monotonic()
            print(f"== {name} ({db}, {size})", file=sys.stderr, flush=True)
            try:
                outcome = _run(name, db, size, args)
            except Exception as exc:  # one broken scenario must not hide the others
                outcome = Outcome(name, db)
                outcome.add("scenario failed", f"{type(exc).__name__}: {exc}"[:300], met=False)
            outcome.add("scenario wall time", f"{time.monotonic() - started:.0f} s")
            outcomes.append(outcome)
            print(render([outcome], f"### {name} ({db})"), flush=True)
    finally:
        run_cleanups()
    table = render(outcomes, header)
    print(table)
    if args.out:  # the table (.md) and everything measured beside it (.json)
        args.out.with_suffix(".md").write_text(table)
        args.out.with_suffix(".json").write_text(
            json.dumps([asdict(o) for o in outcomes], indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
