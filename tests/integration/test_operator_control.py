"""Operator control (issue 15): cancelling running work and bulk replay of dead letters, against
the real in-process worker, PostgreSQL and Redis.

A cancel is tested mid-run: a test-only trigger makes every row a unit writes sleep (the slowness
knob lives in the test's database, not in the code) and records when each row was written, so each
unit's start and whether it was written whole can be read back. The figures a run measured are
printed (`pytest -s`): how long the cancel took to answer and how late after it a unit started.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.signals import task_success
from celery.worker import state as worker_state
from sqlalchemy import func, insert, select, text, update

from focus_app.models import JobRun, JobRunUnit, User
from focus_app.models.analysis import AnalysisJob
from focus_app.models.focus import UserFocusProfile
from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.intelligence import weeks
from tests.conftest import TEST_ADMIN_KEY, celery_call
from tests.integration.conftest import wait_for
from tests.integration.factories import make_dead_letters, make_run
from tests.integration.test_maintenance import CONSOLIDATED, MESSY, seed_attributes

pytestmark = pytest.mark.usefixtures("worker")

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
BOUND_SECONDS = 2.0  # the bound: no unit of a cancelled run starts later than this


@dataclass
class SlowWrites:
    """BEFORE INSERT triggers that sleep per row and log (key, clock time) in `test_writes`."""

    engine: object
    db: object  # the test's session: its open transaction would hold up the DDL
    tables: list[str]

    def install(self, table: str, key_column: str, seconds: float) -> None:
        self.db.rollback()
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE TRIGGER test_slow_write BEFORE INSERT ON {table} FOR EACH ROW "
                    f"EXECUTE FUNCTION test_slow_write('{seconds}', '{key_column}')"
                )
            )
        self.tables.append(table)

    def remove(self, table: str) -> None:
        self.db.rollback()
        with self.engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER IF EXISTS test_slow_write ON {table}"))

    def first_write(self, table: str) -> dict[str, datetime]:
        """When each key's first row was written (the log is written in the unit's transaction: a
        unit that rolled back left none)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT key, min(at) FROM test_writes WHERE tbl = :t GROUP BY key"), {"t": table}
            ).all()
        return {row[0]: row[1] for row in rows}


@pytest.fixture
def slow_writes(app, db) -> Iterator[SlowWrites]:
    engine = app.extensions["db"].engine
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE test_writes (tbl text, key text, at timestamptz DEFAULT clock_timestamp())")
        )
        connection.execute(
            text(
                """
CREATE FUNCTION test_slow_write() RETURNS trigger AS $$
BEGIN
  PERFORM pg_sleep(CAST(TG_ARGV[0] AS double precision));
  INSERT INTO test_writes (tbl, key) VALUES (TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[1]);
  RETURN NEW;
END $$ LANGUAGE plpgsql
"""
            )
        )
    slow = SlowWrites(engine, db, [])
    yield slow
    db.rollback()
    settle()  # units still running (a failed test) would hold the table the trigger is on
    with engine.begin() as connection:
        for table in slow.tables:
            connection.execute(text(f"DROP TRIGGER IF EXISTS test_slow_write ON {table}"))
        connection.execute(text("DROP FUNCTION test_slow_write() CASCADE"))
        connection.execute(text("DROP TABLE test_writes"))


def cancel_mid_run(client, db, job_name: str) -> tuple[dict, float]:
    """Cancel the job's run once its first unit is done; the answer and its latency in seconds."""

    def started_run():
        db.rollback()
        return db.scalar(
            select(JobRun.id).where(
                JobRun.job_name == job_name, JobRun.units_done >= 1, JobRun.status == "running"
            )
        )

    run_id = wait_for(started_run, timeout=120)
    began = time.monotonic()
    response = client.post(f"/api/v1/admin/job-runs/{run_id}/cancel", headers=ADMIN)
    latency = time.monotonic() - began
    assert response.status_code == 200, response.json
    return response.json, latency


def settle() -> None:
    """Units that were running at the cancel have finished (the in-process worker is idle)."""
    wait_for(lambda: not worker_state.active_requests, timeout=120)


def units_of(db, run_id) -> list[JobRunUnit]:
    db.rollback()
    return list(
        db.scalars(select(JobRunUnit).where(JobRunUnit.run_id == run_id).order_by(JobRunUnit.unit_no))
    )


def users_of(unit: JobRunUnit) -> list[str]:
    payload = unit.payload
    return payload[0] if payload and isinstance(payload[0], list) else payload


def check_whole_units(
    units, written: set[str], first_write: dict[str, datetime], cancelled_at: datetime, subjects=users_of
):
    """Every unit was written whole or not at all, exactly the done ones; none started after the
    bound. Returns (done, cancelled, the latest unit start relative to the cancel in seconds)."""
    done = [unit for unit in units if unit.status == "done"]
    cancelled = [unit for unit in units if unit.status == "cancelled"]
    assert len(done) + len(cancelled) == len(units), [unit.status for unit in units]
    latest = -1e9
    for unit in units:
        users = subjects(unit)
        have = [user for user in users if user in written]
        assert len(have) in (0, len(users)), (unit.unit_no, unit.status, len(have), len(users))
        assert (len(have) == len(users)) == (unit.status == "done"), (unit.unit_no, unit.status)
        if have:
            start = min(first_write[user] for user in users)
            latest = max(latest, (start - cancelled_at).total_seconds())
    assert latest <= BOUND_SECONDS, f"a unit started {latest:.2f} s after the cancel"
    return done, cancelled, latest


# --- cancelling runs ------------------------------------------------------------------------


def test_a_cancelled_weekly_tick_stops_writes_whole_briefs_and_the_next_tick_writes_the_rest(
    client, db, celery_app, slow_writes
):
    now = datetime.now(UTC)
    week = weeks.due_week(now, ZoneInfo("UTC"))
    db.execute(
        text(
            "INSERT INTO users (id, timezone, created_at, brief_week) "
            "SELECT 'w-' || lpad(n::text, 3, '0'), 'UTC', :signed_up, :before "
            "FROM generate_series(0, 599) AS n"
        ),
        {"signed_up": now - timedelta(days=120), "before": week - timedelta(days=7)},
    )
    db.commit()
    slow_writes.install("weekly_briefs", "user_id", 0.02)  # a batch of 50: about a second

    tick = celery_app.send_task("intelligence.weekly", kwargs={"trigger": "beat"})
    answer, latency = cancel_mid_run(client, db, "intelligence.weekly")
    summary = tick.get(timeout=120)
    settle()

    assert answer["status"] == "cancelled" and summary["status"] == "cancelled"
    run = db.get(JobRun, uuid.UUID(answer["id"]), populate_existing=True)
    units = units_of(db, run.id)
    briefed = set(db.scalars(select(WeeklyBrief.user_id).where(WeeklyBrief.week_of == week)))
    done, cancelled, latest = check_whole_units(
        units, briefed, slow_writes.first_write("weekly_briefs"), run.finished_at
    )
    assert cancelled, "the cancel came after every batch had started"
    assert (run.status, run.units_total, run.units_done) == ("cancelled", 12, len(done))
    assert run.succeeded == len(briefed) == 50 * len(done) and run.failed == 0
    assert run.result["cancelled_units"] == len(cancelled) and run.error == "cancelled by an operator"
    # The users whose batch never ran are due again: the next tick works out their week.
    waiting = [user for unit in cancelled for user in users_of(unit)]
    rows = db.execute(select(User.brief_week, User.brief_due_at).where(User.id.in_(waiting))).all()
    assert set(rows) == {(week - timedelta(days=7), None)}
    # A redelivered tick of the cancelled run does nothing.
    celery_app.AsyncResult(run.task_id).forget()
    assert celery_app.send_task("intelligence.weekly", kwargs={"trigger": "beat"}, task_id=run.task_id).get(
        timeout=60
    ) == {
        "status": "cancelled",
        "run_id": str(run.id),
        "reason": "its run was cancelled by an operator",
    }
    # A batch that was running at the cancel and then rolled back stays pending in the cancelled
    # run, its users' schedule still moved on (written here as such a rollback leaves it): no
    # sweeper republishes it, its message does nothing, and the next tick gives its users back.
    orphan = cancelled[0]
    db.execute(
        update(JobRunUnit)
        .where(JobRunUnit.run_id == run.id, JobRunUnit.unit_no == orphan.unit_no)
        .values(status="pending", created_at=func.now() - timedelta(hours=1))
    )
    db.execute(
        update(User)
        .where(User.id.in_(users_of(orphan)))
        .values(brief_week=week, brief_due_at=now + timedelta(days=7))
    )
    db.commit()
    assert celery_app.send_task("ops.republish_lost_units").get(timeout=60)["republished"] == 0
    redelivered = celery_app.send_task(
        "intelligence.generate",
        args=[users_of(orphan)],
        kwargs={"run_id": str(run.id), "unit_no": orphan.unit_no},
    ).get(timeout=60)
    assert redelivered == {"status": "cancelled", "run_id": str(run.id), "unit": orphan.unit_no}
    print(
        f"\nweekly: cancel answered in {latency * 1000:.0f} ms; {len(done)} of 12 batches done, "
        f"{len(cancelled)} cancelled; latest batch start {latest:+.2f} s from the cancel"
    )

    slow_writes.remove("weekly_briefs")
    result = celery_app.send_task("intelligence.weekly", kwargs={"trigger": "beat"}).get(timeout=120)
    wait_for(lambda: db.rollback() or db.get(JobRun, result["run_id"]).finished_at, timeout=120)

    assert result["users"] == len(waiting) and result["weeks"] == {week.isoformat(): len(waiting)}
    assert [unit.status for unit in units_of(db, run.id)].count("pending") == 0
    second = db.get(JobRun, uuid.UUID(result["run_id"]))
    assert (second.status, second.succeeded, second.failed) == ("success", len(waiting), 0)
    counts = db.execute(
        select(func.count(), func.count(func.distinct(WeeklyBrief.user_id))).where(
            WeeklyBrief.week_of == week
        )
    ).one()
    assert tuple(counts) == (600, 600)


def test_a_cancelled_profile_run_keeps_whole_batches_and_the_next_run_computes_the_rest(
    client, db, celery_app, slow_writes
):
    db.execute(
        text(
            "INSERT INTO users (id, timezone, sessions_version) "
            "SELECT 'p-' || lpad(n::text, 3, '0'), 'UTC', 3 FROM generate_series(0, 799) AS n"
        )
    )
    db.execute(
        text(
            "INSERT INTO focus_sessions (user_id, start_time, actual_start_time, end_time, actual_end_time, "
            "duration_minutes, expected_duration, was_completed, focus_score) "
            "SELECT u.id, s.start, s.start, s.start + interval '25 min', s.start + interval '25 min', "
            "25, 25, true, 4 "
            "FROM users u, LATERAL (SELECT now() - make_interval(days => d) AS start "
            "FROM generate_series(2, 4) AS d) AS s"
        )
    )
    db.commit()
    slow_writes.install("user_focus_profiles", "user_id", 0.02)  # a batch of 50: about a second

    planned = celery_app.send_task("focus.update_profiles").get(timeout=60)
    assert (planned["users"], planned["batches"]) == (800, 16)
    answer, latency = cancel_mid_run(client, db, "focus.update_profiles")
    settle()

    run = db.get(JobRun, uuid.UUID(answer["id"]), populate_existing=True)
    units = units_of(db, run.id)
    profiled = set(db.scalars(select(UserFocusProfile.user_id)))
    done, cancelled, latest = check_whole_units(
        units, profiled, slow_writes.first_write("user_focus_profiles"), run.finished_at
    )
    assert cancelled, "the cancel came after every batch had started"
    assert (run.status, run.units_done, run.succeeded) == ("cancelled", len(done), len(profiled))
    assert run.result["cancelled_units"] == len(cancelled)
    # The batches' messages were all delivered: the cancelled ones answered without computing.
    print(
        f"\nprofiles: cancel answered in {latency * 1000:.0f} ms; {len(done)} of 16 batches done, "
        f"{len(cancelled)} cancelled; latest batch start {latest:+.2f} s from the cancel"
    )

    # A later run (the next beat slot) finds exactly the users still out of date.
    slow_writes.remove("user_focus_profiles")
    again = celery_app.send_task("focus.update_profiles").get(timeout=60)
    assert again["users"] == 800 - len(profiled)
    assert celery_app.send_task("ops.republish_lost_units").get(timeout=60)["republished"] == 0
    wait_for(lambda: db.rollback() or db.get(JobRun, again["run_id"]).finished_at, timeout=120)
    assert db.scalar(select(func.count()).select_from(UserFocusProfile)) == 800


def test_a_cancelled_maintenance_run_leaves_each_attribute_set_old_or_whole(
    client, db, celery_app, slow_writes
):
    entities = [f"m-{n:02}" for n in range(24)]
    for entity_id in entities:
        seed_attributes(db, entity_id)
    slow_writes.install("profile_attributes", "entity_id", 0.1)  # one entity: about 0.4 s

    planned = celery_app.send_task("maintenance.consolidate_profiles").get(timeout=60)
    assert planned["entities"] == 24
    answer, latency = cancel_mid_run(client, db, "maintenance.consolidate_profiles")
    settle()

    run = db.get(JobRun, uuid.UUID(answer["id"]), populate_existing=True)
    units = units_of(db, run.id)
    rows = db.execute(text("SELECT entity_id, category, key, value FROM profile_attributes")).all()
    sets: dict[str, set] = {}
    for row in rows:
        sets.setdefault(row.entity_id, set()).add((row.category, row.key, row.value))
    messy = {(category, key, value) for category, key, value, _ in MESSY}
    assert all(found in (messy, CONSOLIDATED) for found in sets.values()), "a half-written attribute set"
    consolidated = {entity for entity, found in sets.items() if found == CONSOLIDATED}
    done, cancelled, latest = check_whole_units(
        units,
        consolidated,
        slow_writes.first_write("profile_attributes"),
        run.finished_at,
        subjects=lambda unit: [unit.payload[0]],  # [entity_id, entity_type, dry_run]
    )
    assert cancelled, "the cancel came after every entity had started"
    assert (run.status, run.units_done, run.succeeded) == ("cancelled", len(done), len(consolidated))
    print(
        f"\nmaintenance: cancel answered in {latency * 1000:.0f} ms; {len(done)} of 24 entities done, "
        f"{len(cancelled)} cancelled; latest entity start {latest:+.2f} s from the cancel"
    )

    slow_writes.remove("profile_attributes")
    again = celery_app.send_task("maintenance.consolidate_profiles").get(timeout=60)
    assert again["entities"] == len(cancelled)
    wait_for(lambda: db.rollback() or db.get(JobRun, again["run_id"]).finished_at, timeout=120)
    rows = db.execute(text("SELECT entity_id, category, key, value FROM profile_attributes")).all()
    assert {(r.category, r.key, r.value) for r in rows if r.entity_id == entities[-1]} == CONSOLIDATED
    assert len(rows) == 24 * len(CONSOLIDATED)


def test_cancel_answers_404_for_an_unknown_run_and_409_for_a_finished_one(client, db, celery_app):
    assert client.post(f"/api/v1/admin/job-runs/{uuid.uuid4()}/cancel", headers=ADMIN).status_code == 404
    db.execute(insert(User).values(id="solo"))
    db.commit()
    summary = celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["solo"]}).get(timeout=60)
    wait_for(lambda: db.rollback() or db.get(JobRun, summary["run_id"]).finished_at)

    finished = client.post(f"/api/v1/admin/job-runs/{summary['run_id']}/cancel", headers=ADMIN)

    assert finished.status_code == 409
    assert "is success: only a running run can be cancelled" in finished.json["message"]
    assert client.post(f"/api/v1/admin/job-runs/{summary['run_id']}/cancel").status_code == 401
    assert client.post("/api/v1/admin/job-runs/not-a-uuid/cancel", headers=ADMIN).status_code == 404


def test_a_cancelled_weekly_run_does_not_count_against_the_weekly_health(client, db):
    now = datetime.now(UTC)
    good = make_run(db, "intelligence.weekly", "success", started=now - timedelta(hours=2), succeeded=10)
    db.execute(update(JobRun).where(JobRun.id == good).values(result={"success_rate": 1.0, "users": 10}))
    db.commit()
    stopped = make_run(db, "intelligence.weekly", "running", started=now - timedelta(minutes=5))
    assert client.post(f"/api/v1/admin/job-runs/{stopped}/cancel", headers=ADMIN).status_code == 200

    checks = client.get("/api/v1/admin/intelligence/health", headers=ADMIN).json["checks"]

    assert checks["success_rate"] == {"healthy": True, "success_rate": 1.0, "threshold": 0.95}
    assert checks["last_run"]["last_run_status"] == "cancelled"


# --- cancelling a pending analysis job ------------------------------------------------------


def test_a_cancelled_pending_analysis_job_never_runs_and_frees_its_context(client, auth, db, celery_app):
    db.execute(insert(User).values(id="ann"))
    db.commit()
    # Written pending as the trigger writes it, its message not yet sent.
    job_id = db.execute(
        insert(AnalysisJob)
        .values(user_id="ann", context_type="work", priority="high", source="manual")
        .returning(AnalysisJob.id)
    ).scalar_one()
    db.commit()

    answer = client.post(f"/api/v1/admin/analysis-jobs/{job_id}/cancel", headers=ADMIN)

    assert answer.status_code == 200
    assert (answer.json["status"], answer.json["error"]) == ("cancelled", "cancelled by an operator")
    # Its message, delivered late, and the sweeper, overdue or not, leave it alone.
    answers: dict[str, dict] = {}

    def on_success(sender=None, result=None, **_kwargs):
        answers[sender.request.id] = result

    task_success.connect(on_success, weak=False)
    try:
        late = celery_app.send_task("analysis.run", args=[str(job_id)], kwargs={"user_id": "ann"})
        assert wait_for(lambda: answers.get(late.id))["status"] == "duplicate"  # results are not kept
    finally:
        task_success.disconnect(on_success)
    db.execute(update(AnalysisJob).values(next_attempt_at=func.now() - timedelta(hours=1)))
    db.commit()
    swept = celery_app.send_task("analysis.requeue_stale").get(timeout=30)
    assert swept["republished"] == 0
    db.rollback()
    assert db.get(AnalysisJob, job_id, populate_existing=True).status == "cancelled"
    # Cancelling again, or a job that is not pending: 409; unknown: 404.
    again = client.post(f"/api/v1/admin/analysis-jobs/{job_id}/cancel", headers=ADMIN)
    assert again.status_code == 409 and "is cancelled: only a pending job" in again.json["message"]
    unknown = client.post(f"/api/v1/admin/analysis-jobs/{uuid.uuid4()}/cancel", headers=ADMIN)
    assert unknown.status_code == 404
    # The user's context is free again: a manual refresh opens a new job.
    fresh = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=auth("ann"))
    assert fresh.status_code == 202 and fresh.json["job"]["id"] != str(job_id)
    wait_for(lambda: db.rollback() or db.get(AnalysisJob, uuid.UUID(fresh.json["job"]["id"])).completed_at)
    running = client.post(f"/api/v1/admin/analysis-jobs/{fresh.json['job']['id']}/cancel", headers=ADMIN)
    assert running.status_code == 409 and "is completed" in running.json["message"]


# --- bulk replay ----------------------------------------------------------------------------


def failed_jobs(db, user_id: str, count: int, *, context: str, error: str, failed_at: datetime) -> None:
    contexts = [f"{context}-{n}" for n in range(count)] if count > 1 else [context]
    make_dead_letters(db, user_id, contexts, error, failed_at=failed_at)


def status_counts(db) -> dict[str, int]:
    db.rollback()
    return dict(db.execute(select(AnalysisJob.status, func.count()).group_by(AnalysisJob.status)).all())


def test_bulk_replay_dry_run_counts_and_samples_and_changes_nothing(client, db):
    now = datetime.now(UTC)
    failed_jobs(db, "u1", 3, context="work", error="LLMError: HTTP 429 Too Many Requests", failed_at=now)
    failed_jobs(db, "u2", 2, context="study", error="LLMError: HTTP 429 Too Many Requests", failed_at=now)
    failed_jobs(db, "u1", 1, context="home", error="MalformedOutput: not JSON", failed_at=now)
    failed_jobs(db, "u3", 1, context="work", error="llmerror: http 429", failed_at=now - timedelta(days=3))
    before = status_counts(db)

    def preview(**body) -> dict:
        response = client.post("/api/v1/admin/analysis-jobs/replay", json=body, headers=ADMIN)
        assert response.status_code == 200, response.json
        return response.json

    everything = preview()
    assert (everything["dry_run"], everything["matched"], everything["run_id"]) == (True, 7, None)
    assert len(everything["sample"]) == 7 and everything["sample"][0]["status"] == "failed"
    assert preview(error="http 429")["matched"] == 6  # any case
    assert preview(error="429", context_type="study")["matched"] == 0  # context types are study-0, -1
    assert preview(error="429", user_id="u2")["matched"] == 2
    assert preview(error="429", failed_since=(now - timedelta(days=1)).isoformat())["matched"] == 5
    assert preview(failed_until=(now - timedelta(days=1)).isoformat())["matched"] == 1
    assert preview(error="100%")["matched"] == 0  # LIKE wildcards are plain characters here
    assert status_counts(db) == before
    assert db.scalar(select(func.count()).select_from(JobRun)) == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"context_type": "Not Valid"}, "context_type"),
        ({"error": ""}, "error"),
        ({"failed_since": "2026-01-05T00:00:00"}, "failed_since"),  # no offset: no moment
        ({"failed_since": "2026-01-06T00:00:00Z", "failed_until": "2026-01-05T00:00:00Z"}, "failed_until"),
        ({"dry_run": "maybe"}, "dry_run"),
        ({"status": "completed"}, "status"),
    ],
)
def test_bulk_replay_bad_input_is_422_naming_the_field(client, body, field):
    response = client.post("/api/v1/admin/analysis-jobs/replay", json=body, headers=ADMIN)
    assert response.status_code == 422 and field in response.json["errors"]["json"], response.json


def test_bulk_replay_replays_every_match_exactly_once_in_pages(client, db, celery_app):
    now = datetime.now(UTC)
    failed_jobs(db, "bulk", 1100, context="ctx", error="TimeoutError: provider timed out", failed_at=now)
    failed_jobs(db, "other", 5, context="ctx", error="MalformedOutput: not JSON", failed_at=now)
    # An open job (pending, or deferred by the daily budget) for two of the contexts: those dead
    # letters are skipped, left failed.
    db.execute(
        insert(AnalysisJob),
        [
            {"user_id": "bulk", "context_type": "ctx-7", "priority": "low", "source": "chat"},
            {
                "user_id": "bulk",
                "context_type": "ctx-8",
                "priority": "low",
                "source": "chat",
                "status": "deferred",
            },
        ],
    )
    db.commit()

    began = time.monotonic()
    response = client.post(
        "/api/v1/admin/analysis-jobs/replay", json={"error": "timed out", "dry_run": False}, headers=ADMIN
    )
    seconds = time.monotonic() - began

    assert response.status_code == 200, response.json
    body = response.json
    assert (body["matched"], body["replayed"], body["skipped"], body["pages"]) == (1100, 1098, 2, 3)
    assert (body["status"], body["published"], body["dry_run"]) == ("success", 1098, False)
    run = db.get(JobRun, uuid.UUID(body["run_id"]))
    assert (run.job_name, run.trigger, run.status, run.succeeded, run.skipped) == (
        "analysis.replay",
        "api",
        "success",
        1098,
        2,
    )
    assert run.result["filter"] == {"error": "timed out"} and run.units_done == 3
    # Every replayed job runs once on its fresh attempt (too few messages: insufficient data).
    wait_for(lambda: status_counts(db).get("completed") == 1098, timeout=180)
    assert status_counts(db) == {"completed": 1098, "failed": 7, "pending": 1, "deferred": 1}
    attempts = db.scalars(select(AnalysisJob.attempts).where(AnalysisJob.status == "completed")).all()
    assert set(attempts) == {1}
    # The same filter again finds only the skipped ones.
    again = client.post("/api/v1/admin/analysis-jobs/replay", json={"error": "timed out"}, headers=ADMIN)
    assert again.json["matched"] == 2
    print(f"\nbulk replay: 1,100 dead letters matched, 1,098 replayed in 3 pages in {seconds:.2f} s")


def test_bulk_replay_by_celery_call_takes_the_filter_and_is_recorded(db, celery_app, test_settings):
    now = datetime.now(UTC)
    failed_jobs(db, "cli", 4, context="work", error="LLMError: HTTP 503 overloaded", failed_at=now)
    failed_jobs(db, "cli", 3, context="home", error="LLMError: HTTP 503 overloaded", failed_at=now)
    failed_jobs(db, "cli2", 2, context="work", error="LLMError: HTTP 503 overloaded", failed_at=now)

    dry = celery_app.AsyncResult(
        celery_call(test_settings, "analysis.replay", '{"user_id": "cli", "error": "503", "dry_run": true}')
    ).get(timeout=60)
    assert (dry["dry_run"], dry["matched"], len(dry["sample"])) == (True, 7, 7)

    since = (now - timedelta(hours=1)).isoformat()
    task_id = celery_call(
        test_settings,
        "analysis.replay",
        json.dumps({"user_id": "cli", "error": "overloaded", "failed_since": since}),
    )
    result = celery_app.AsyncResult(task_id).get(timeout=60)

    assert (result["matched"], result["replayed"], result["status"], result["pages"]) == (7, 7, "success", 1)
    run = db.get(JobRun, uuid.UUID(result["run_id"]))
    assert (run.job_name, run.trigger, run.task_id, run.succeeded) == (
        "analysis.replay",
        "manual",
        task_id,
        7,
    )
    assert run.scope.startswith("dead letters, error overloaded, user_id cli")
    db.rollback()
    left = db.scalars(select(AnalysisJob.user_id).where(AnalysisJob.status == "failed")).all()
    assert sorted(left) == ["cli2", "cli2"]


def test_a_bulk_replay_cancelled_between_pages_stops_after_the_page_it_was_in(client, db, celery_app, app):
    now = datetime.now(UTC)
    failed_jobs(db, "many", 1200, context="c", error="boom", failed_at=now)
    # Hold one job of the second page: the replay waits on it mid-page.
    second_page = db.scalars(
        select(AnalysisJob.id).order_by(AnalysisJob.completed_at, AnalysisJob.id).offset(700).limit(1)
    ).one()
    holder = app.extensions["db"].engine.connect()
    held = holder.begin()
    holder.execute(select(AnalysisJob.id).where(AnalysisJob.id == second_page).with_for_update())
    try:
        replay = celery_app.send_task("analysis.replay", kwargs={"error": "boom"})

        def in_second_page():
            db.rollback()
            waiting = db.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE analysis_jobs%'"
                )
            )
            return waiting and db.scalar(select(JobRun.id).where(JobRun.job_name == "analysis.replay"))

        run_id = wait_for(in_second_page, timeout=60)
        cancelled = client.post(f"/api/v1/admin/job-runs/{run_id}/cancel", headers=ADMIN)
        assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    finally:
        held.rollback()
        holder.close()
    result = replay.get(timeout=60)

    assert (result["status"], result["replayed"], result["pages"]) == ("cancelled", 1000, 2)
    assert db.get(JobRun, run_id).succeeded == 1000
    assert status_counts(db).get("failed") == 200


def test_replay_task_refuses_a_job_id_with_a_filter(celery_app):
    with pytest.raises(Exception, match="job_id replays that one job"):
        celery_app.send_task("analysis.replay", kwargs={"job_id": str(uuid.uuid4()), "error": "x"}).get(
            timeout=30
        )
    with pytest.raises(Exception, match="failed_since must be an ISO 8601 date and time with an offset"):
        celery_app.send_task("analysis.replay", kwargs={"failed_since": "2026-01-05"}).get(timeout=30)
    with pytest.raises(Exception, match="failed_until must be after failed_since"):
        celery_app.send_task(
            "analysis.replay",
            kwargs={"failed_since": "2026-01-06T00:00:00+00:00", "failed_until": "2026-01-05T00:00:00+00:00"},
        ).get(timeout=30)
