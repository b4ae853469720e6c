"""Running ``ReprocessJob`` with a runner and collecting its output rows.

``-r inline``/``-r local`` ignore any user mrjob.conf (``--no-conf``) so a laptop's config
cannot change a test; ``-r emr``/``-r hadoop`` read ``deploy/emr/mrjob.conf`` (or the one in
``EVENTPIPE_REPROCESS_MRJOB_CONF``), with the few EMR settings overridable from the
environment.

The local runner (the default) is bounded in memory: every task is a subprocess that streams
its input, and the shuffle between steps is GNU ``sort`` with a fixed buffer
(``reprocess_sort_buffer_mb``, ``sort -S``) that spills sorted runs to the tmp dir beyond it.
So a day costs disk (about twice its plain JSONL), not memory. The inline runner sorts each
step's whole input in Python lists: fine for tests and small days only.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

from eventpipe.loader.reprocess.job import ReprocessJob
from eventpipe.loader.reprocess.packed import is_packed
from eventpipe.loader.reprocess.steps import map_line, merge_partials
from eventpipe.settings import Settings

DEFAULT_CONF = Path(__file__).resolve().parents[3] / "deploy" / "emr" / "mrjob.conf"
Corrections = dict[str, list[dict[str, Any]]]


def sort_command(buffer_mb: int) -> str:
    """mrjob's own sort (by key only, stable, bytewise: ``-t TAB -k 1,1 -s``, LC_ALL=C) with a
    fixed memory buffer. mrjob splits the option with shlex: the quoted tab stays one token."""
    return f"sort -t '\t' -k 1,1 -s -S {buffer_mb}M"


def job_args(settings: Settings, day: date, runner: str, tmp_dir: Path | None = None) -> list[str]:
    args = ["-r", runner, "--day", day.isoformat()]
    if runner in ("inline", "local"):
        args.append("--no-conf")
        args.append("--checked-inputs")  # download_inputs checked every line as the loader does
        args.append("--packed-inputs")  # ... and packed it; run_job packs the snapshot files
        if tmp_dir is not None:
            args += ["--local-tmp-dir", str(tmp_dir)]
        if runner == "local":
            args += ["--num-cores", str(settings.reprocess_tasks or os.cpu_count() or 1)]
            args += ["--sort-bin", sort_command(settings.reprocess_sort_buffer_mb)]
            # every task is a fresh Python: mrjob.compat imports distutils, which setuptools'
            # shim turns into ~1 s of pkg_resources per task; the stdlib one takes ~0.2 s
            args += ["--cmdenv", "SETUPTOOLS_USE_DISTUTILS=stdlib"]
        return args
    args += ["-c", settings.reprocess_mrjob_conf or str(DEFAULT_CONF)]
    if runner == "emr":
        if settings.emr_instance_type:
            args += ["--instance-type", settings.emr_instance_type]
        if settings.emr_core_instances:
            args += ["--num-core-instances", str(settings.emr_core_instances)]
        if settings.emr_log_uri:
            args += ["--cloud-log-dir", settings.emr_log_uri]
    return args


def packed_file(path: str, day: date) -> str:
    """``path`` if its lines are packed (``inputs.Packer``'s files), else a packed copy beside
    it (the snapshots' plain rows, ``steps.map_line``): a job with ``--packed-inputs`` has no
    first mapper to pack them. Local inputs only: their raw lines were checked already."""
    with open(path, "rb") as src:
        first = src.readline()
        if not first or is_packed(first):  # the Packer's files are packed throughout
            return path
        src.seek(0)
        target = f"{path}.packed"
        with open(target, "wb") as sink:
            for line in src:
                packed = map_line(line.rstrip(b"\r\n"), day, checked=True)
                sink.writelines(packed_line + b"\n" for packed_line in packed)
    return target


def run_job(args: list[str], inputs: list[str]) -> Corrections:
    """Run the job to completion; its final rows per table, in a deterministic order."""
    if "--packed-inputs" in args:
        day = date.fromisoformat(args[args.index("--day") + 1])
        inputs = [packed_file(path, day) for path in inputs]
    job = ReprocessJob(args=[*args, *inputs])
    with job.make_runner() as runner:
        runner.run()
        return merge_partials(job.parse_output(runner.cat_output()))
