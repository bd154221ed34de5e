"""What one server log line costs (issue 14): process CPU per ``logging`` call of an
access-log line with its fields, through ``jobyard.serverlog``'s handler, into /dev/null.

    .venv/bin/python bench/log_cost.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from jobyard import serverlog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    out = sys.stdout
    sys.stderr = open(os.devnull, "w")  # the handler's stream for the run
    extra = {"method": "GET", "path": "/v1/jobs/x", "status": 200, "duration_ms": 1.23}
    for fmt in serverlog.FORMATS:
        serverlog.configure("info", fmt)
        log = logging.getLogger("jobyard.access")
        started = time.process_time()
        for _ in range(args.lines):
            log.info("%s %s %d %.1fms", "GET", "/v1/jobs/x", 200, 1.23, extra=extra)
        per_line = (time.process_time() - started) / args.lines * 1e6
        print(f"{fmt}: {per_line:.1f} µs CPU per line", file=out)


if __name__ == "__main__":
    main()
