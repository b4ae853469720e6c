"""Shifts the wall clock of every Python process that starts with this folder on its
path (``make test-calendar`` puts it on PYTHONPATH, so collectors, stream workers and
loaders the tests start are shifted too) by TESTS_CLOCK_SHIFT_DAYS days.

time-machine patches Python's wall clock (time.time, datetime.now, date.today, ...)
inside the interpreter only; monotonic time and C libraries (librdkafka) keep the real
clock, which libfaketime could not offer without hanging librdkafka or time.sleep.
"""

import os

_days = os.environ.get("TESTS_CLOCK_SHIFT_DAYS")
if _days:
    from datetime import UTC, datetime, timedelta

    import time_machine

    _traveller = time_machine.travel(datetime.now(UTC) + timedelta(days=float(_days)), tick=True)
    _traveller.start()
