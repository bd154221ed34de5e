"""Fault-injection suite of issue 11 §3: real ``jobyard serve`` processes killed with
SIGKILL, a PostgreSQL server stopped under load, a full data disk, fuzzed input and
connection floods; each scenario measures what the server promises and the suite prints
one table (``python -m bench.faults --help``; see docs/explanation/reliability.md)."""
