"""``make test-calendar``: the unit and integration tiers with the clock a month ahead.

A test that hard-codes "today" (a literal date that a listing window, a retention or a
schedule compares with the real clock) passes on the day it is written and fails weeks
later on every fresh clone (issue 19). Running the suite on a shifted clock makes such a
test fail now. The wall clock of the test process and of every Python process it starts
(collectors, stream workers, loaders) is shifted by ``shifted_clock/sitecustomize.py``.
The S3 API signs each request with the client's clock and refuses one more than 15
minutes off, so a dedicated s3rver runs on the same shifted clock (libfaketime: it is
Node.js); Kafka and PostgreSQL keep the real one, as they may in production (what they
store carries the clients' timestamps).

    python -m tests.support.calendar [--days-ahead N] [pytest arguments...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.stack import local_addresses
from tests.support.components import s3_server

SHIFTED_CLOCK = Path(__file__).with_name("shifted_clock")
# Tests that cannot run on a shifted clock, and why: s3rver reports an object's
# LastModified from its file's mtime, which the kernel stamps with the real clock.
NOT_ON_A_SHIFTED_CLOCK = ["tests/integration/test_reports_probes.py::test_s3_newest_raw_object"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days-ahead", type=int, default=31)
    parser.add_argument("pytest_args", nargs="*", default=["tests/unit", "tests/integration"])
    args = parser.parse_args(argv)
    if shutil.which("faketime") is None:
        parser.error("faketime is not installed (Debian package faketime; `scripts/stack.sh up tools`)")
    shift = f"+{args.days_ahead}d"  # libfaketime's syntax
    with tempfile.TemporaryDirectory(prefix="eventpipe-calendar-") as tmp:
        s3 = s3_server(Path(tmp), wrapper=("faketime", "-f", shift))
        s3.start()
        try:
            env = dict(
                os.environ,
                EVENTPIPE_KAFKA_BOOTSTRAP=local_addresses()["kafka"],
                EVENTPIPE_S3_ENDPOINT=s3.part.endpoint,
                EVENTPIPE_WAREHOUSE_DSN=local_addresses()["warehouse"],
                TESTS_CLOCK_SHIFT_DAYS=str(args.days_ahead),
                PYTHONPATH=os.pathsep.join(filter(None, [str(SHIFTED_CLOCK), os.environ.get("PYTHONPATH")])),
            )
            deselect = [f"--deselect={test}" for test in NOT_ON_A_SHIFTED_CLOCK]
            pytest = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                *deselect,
                *args.pytest_args,
            ]
            print(f"[calendar] the clock {args.days_ahead} days ahead: {' '.join(pytest[1:])}", flush=True)
            return subprocess.call(pytest, env=env)
        finally:
            s3.close()


if __name__ == "__main__":
    sys.exit(main())
