"""Operator control over running work: cancelling a run of any job.

The cancel itself is the fan-out protocol's (jobkit/fanout.py); what a family gives back for the
units that never ran is the family's, and this is the one place that knows which family has one.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from focus_app.models import JobRun
from focus_app.services.intelligence import JOB_NAME as WEEKLY_JOB_NAME
from focus_app.services.intelligence import job as weekly
from focus_app.services.jobkit import fanout

log = logging.getLogger("operator_control")

# Profiles and consolidation find their work again from the data (sessions_version,
# attributes_version); only the weekly ticks moved a schedule that must be given back.
RELEASES: dict[str, fanout.Release] = {WEEKLY_JOB_NAME: weekly.release_units}


def cancel_run(db: Session, run_id: uuid.UUID) -> JobRun:
    """Stop an open run: no unit of it starts once this has committed; NotFound / Conflict."""
    run = fanout.cancel(db, run_id, RELEASES)
    log.warning(
        "job run %s (%s) cancelled by an operator: %d of %d units done, %s units cancelled",
        run.id,
        run.job_name,
        run.units_done,
        run.units_total,
        (run.result or {}).get("cancelled_units", 0),
    )
    return run
