"""A batch's service and store CPU per job, without HTTP: 1,000-job batches (the body
``batch_submit.py`` sends) validated as the route does and accepted by
``JobService.submit_batch`` in this process (SQLite in a fresh data dir, no dispatcher).
Prints the process's CPU per job (every thread: the writer thread's insert included).
``--full``: each job as a ``JobRequest`` (its ``JobSpec``), the way of a job that is not
plain, instead of the route's ``PlainSpec``.

    .venv/bin/python bench/batch_service_cpu.py [--batches 5] [--full]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import machine_line

from jobyard.api.schemas.jobs import JobCreate, plain_job
from jobyard.domain.jobs import PlainSpec
from jobyard.server import start_services
from jobyard.service.submission import JobRequest
from jobyard.settings import Settings

RAW = {"entrypoint": "python3 -c pass", "scheduled_at": "2099-01-01T00:00:00Z"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="JobRequests, not PlainSpecs")
    args = parser.parse_args()
    print(machine_line())
    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    services, key = start_services(Settings(data_dir=home, run_dispatcher=False))
    try:
        principal = services.auth.authenticate(f"Bearer {key}")

        def batch() -> list[JobRequest | PlainSpec]:
            if args.full:
                return [JobCreate.model_validate(RAW).to_request(None) for _ in range(1000)]
            return [_as_the_route_reads(RAW) for _ in range(1000)]

        services.jobs.submit_batch(principal, batch())  # warm-up
        batches = [batch() for _ in range(args.batches)]
        start = time.process_time()
        for requests in batches:
            services.jobs.submit_batch(principal, requests)
        per_job = (time.process_time() - start) / (1000 * args.batches) * 1e6
        print(f"service and store CPU per job: {per_job:.1f} us")
    finally:
        services.close()


def _as_the_route_reads(raw: dict[str, str]) -> JobRequest | PlainSpec:
    """A job as ``POST /v1/jobs/batch`` reads it (a plain job without a ``JobSpec``)."""
    plain = plain_job(raw)
    if plain is not None:
        return plain
    job = JobCreate.model_validate(raw)
    return job.to_plain() or job.to_request(None)


if __name__ == "__main__":
    main()
