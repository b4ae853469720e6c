"""A measured per-event cost projected to a 1 B-event day on EMR (pure arithmetic).

Assumptions (docs/reprocess.md, "A day of 1 B events on EMR"): one EC2 vCPU does what one
core did here; m6g.xlarge (4 vCPU) at us-east-1 on-demand $0.154/h EC2 + $0.0385/h EMR; a
cluster of ``core_nodes`` core nodes plus one primary node, paid for the whole run plus
~15 minutes of provisioning and bootstrap; a 2x safety margin for what a laptop-scale
measurement cannot see (shuffle spills, stragglers, hyper-threads).
"""

from __future__ import annotations

from typing import Any

EVENTS_PER_DAY = 1_000_000_000
INSTANCE = "m6g.xlarge"
VCPUS = 4
PRICE_PER_HOUR = 0.154 + 0.0385  # EC2 + EMR, on-demand, us-east-1
STARTUP_H = 0.25
SAFETY = 2.0


def project(core_us_per_event: float, core_nodes: int = 4) -> dict[str, Any]:
    """Instances, hours and dollars for ``EVENTS_PER_DAY`` at ``core_us_per_event``."""
    core_hours = EVENTS_PER_DAY * core_us_per_event / 1e6 / 3600
    work_h = core_hours / (core_nodes * VCPUS)
    hours = work_h + STARTUP_H
    dollars = (core_nodes + 1) * hours * PRICE_PER_HOUR
    return {
        "instance": INSTANCE,
        "instances": core_nodes + 1,
        "core_hours": round(core_hours, 1),
        "hours": round(hours, 2),
        "dollars": round(dollars, 2),
        "dollars_with_margin": round(dollars * SAFETY, 2),
    }
