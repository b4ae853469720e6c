"""The nightly reprocess (issue 5): recompute a closed day from the raw S3 archive with an
mrjob job, write ``corrections/``, and replace the day's aggregates in one transaction.

- ``job.ReprocessJob``: the mrjob job (pure rollups in ``eventpipe.rollup``).
- ``pipeline.run_day``: one day end to end (lock, inputs, job, corrections, replacement).
- ``finalize.replace_day``: the day replacement of docs/contracts.md §6, with drift.
- ``schedule.NightlyScheduler``: what the loader service calls to run closed days.
"""
