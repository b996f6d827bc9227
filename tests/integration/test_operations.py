"""The operator page's API: periodic jobs with last/next run and success rate, the retry queue,
and the replay of a dead-lettered analysis job (real PostgreSQL, Redis and worker)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from beat_schedule import build_beat_schedule
from focus_app.models.analysis import AnalysisJob
from focus_app.models.intelligence import JobRetryQueue
from focus_app.services.analysis import jobs as analysis_jobs
from focus_app.services.analysis import triggers
from focus_app.services.intelligence import retry_queue
from focus_app.services.jobkit import switches
from focus_app.services.ops import metrics
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.conftest import wait_for
from tests.integration.factories import make_failed_analysis_job, make_run, make_user

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
WEEK = date(2026, 1, 5)


def overview(client) -> dict:
    response = client.get("/api/v1/admin/periodic-jobs", headers=ADMIN)
    assert response.status_code == 200, response.json
    return response.json


def job(answer: dict, task: str) -> dict:
    (found,) = [item for item in answer["jobs"] if item["task"] == task]
    return found


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------- periodic jobs


def test_every_beat_entry_is_listed_with_its_schedule_in_words(client, app):
    answer = overview(client)

    schedule = build_beat_schedule(app.extensions["settings"])
    assert [item["name"] for item in answer["jobs"]] == list(schedule)
    assert answer["timezone"] == "UTC" and answer["success_rate_window"] == 20
    profiles = job(answer, "focus.update_profiles")
    assert profiles["schedule"] == "every 5 minutes" and profiles["interval_seconds"] == 300
    weekly = job(answer, "intelligence.weekly")
    assert weekly["schedule"] == "every 5 minutes (UTC)"
    assert weekly["interval_seconds"] is None
    assert job(answer, "ops.archive_failed_analysis_jobs")["schedule"] == "daily at 03:30 (UTC)"
    # Nothing has run: no history, every interval job is due at beat's next tick.
    assert profiles["last_run"] is None and profiles["success_rate"] is None and profiles["due"] is True
    assert all(item["enabled"] for item in answer["jobs"])


def test_last_run_success_rate_and_recent_runs_come_from_job_runs(client, db):
    now = datetime.now(UTC)
    # Oldest first: 3 failed (outside the window of 20 finished runs), 17 successes, 3 failures,
    # 2 skipped (never counted), then one still running.
    statuses = ["failed"] * 3 + ["success"] * 17 + ["failed"] * 3 + ["skipped"] * 2
    for n, status in enumerate(statuses):
        make_run(db, "focus.update_profiles", status, started=now - timedelta(minutes=5 * (30 - n)))
    running = make_run(db, "focus.update_profiles", "running", started=now - timedelta(seconds=30))
    make_run(
        db,
        "maintenance.consolidate_profiles",
        "failed",
        started=now - timedelta(minutes=10),
        failed=2,
        error="malformed model output: not an object",
    )

    answer = overview(client)

    profiles = job(answer, "focus.update_profiles")
    assert (profiles["runs_succeeded"], profiles["runs_counted"]) == (17, 20)
    assert profiles["success_rate"] == 0.85
    assert profiles["last_run"]["id"] == str(running) and profiles["last_run"]["status"] == "running"
    assert [run["status"] for run in profiles["recent_runs"]] == ["running"] + ["skipped"] * 2 + [
        "failed"
    ] * 3 + ["success"] * 4
    starts = [at(run["started_at"]) for run in profiles["recent_runs"]]
    assert starts == sorted(starts, reverse=True)
    last_success = at(profiles["last_success_at"])
    assert now - timedelta(minutes=56) < last_success < now - timedelta(minutes=54)  # the 20th run
    maintenance = job(answer, "maintenance.consolidate_profiles")
    assert maintenance["success_rate"] == 0.0 and maintenance["last_success_at"] is None
    assert maintenance["last_run"]["error"] == "malformed model output: not an object"
    assert maintenance["last_run"]["failed"] == 2


def test_next_run_counts_the_interval_from_the_last_beat_run(client, db):
    now = datetime.now(UTC)
    started = now - timedelta(minutes=2)
    make_run(db, "focus.update_profiles", "success", started=started)
    # A manual run does not move beat's clock.
    make_run(db, "focus.update_profiles", "success", started=now - timedelta(seconds=10), trigger="manual")
    make_run(db, "intelligence.retry_failed", "success", started=now - timedelta(hours=1))

    answer = overview(client)

    profiles = job(answer, "focus.update_profiles")
    assert profiles["due"] is False
    assert abs(at(profiles["next_run_at"]) - (started + timedelta(seconds=300))) < timedelta(seconds=1)
    retry = job(answer, "intelligence.retry_failed")  # every 15 minutes, last beat run an hour ago
    assert retry["due"] is True
    assert abs(at(retry["next_run_at"]) - at(answer["generated_at"])) < timedelta(seconds=1)


def test_jobs_without_run_rows_use_the_success_stamp_and_crontabs_their_next_slot(client, redis_conn):
    finished = datetime.now(UTC) - timedelta(seconds=20)
    metrics.record_periodic_success(redis_conn, "analysis.requeue_stale", finished.timestamp())

    answer = overview(client)

    sweeper = job(answer, "analysis.requeue_stale")  # every 60 s, no job_runs rows
    assert sweeper["last_run"] is None
    assert abs(at(sweeper["last_success_at"]) - finished) < timedelta(seconds=1)
    assert abs(at(sweeper["next_run_at"]) - (finished + timedelta(seconds=60))) < timedelta(seconds=1)
    assert sweeper["due"] is False
    archive = at(job(answer, "ops.archive_failed_analysis_jobs")["next_run_at"])
    generated = at(answer["generated_at"])
    assert (archive.hour, archive.minute) == (3, 30) and timedelta(0) < archive - generated <= timedelta(
        days=1
    )


def test_a_disabled_job_shows_its_switch(client, db):
    switches.set_enabled(db, "intelligence.retry_failed", False, {"intelligence.retry_failed"})
    db.commit()

    answer = overview(client)

    assert job(answer, "intelligence.retry_failed")["enabled"] is False
    assert job(answer, "focus.update_profiles")["enabled"] is True


# ---------------------------------------------------------------- retry queue


def queue_users(db, reasons: dict[str, str]) -> None:
    for user_id in reasons:
        make_user(db, user_id)
    retry_queue.enqueue_retries(db, reasons, WEEK, retry_queue.RetryPolicy(delay_seconds=3600))
    db.commit()


def test_retry_queue_lists_entries_paged_with_attempts_and_errors(client, db):
    queue_users(db, {f"user{n}": f"unknown timezone 'Mars/{n}'" for n in range(3)})
    # user2 was parked after its retries (what intelligence.retry_failed does): listed last.
    db.execute(
        update(JobRetryQueue)
        .where(JobRetryQueue.user_id == "user2")
        .values(status="exhausted", retry_count=3)
    )
    db.commit()

    first = client.get("/api/v1/admin/retry-queue?page_size=2", headers=ADMIN).json
    second = client.get("/api/v1/admin/retry-queue?page_size=2&page=2", headers=ADMIN).json

    assert first["total"] == 3 and (first["page"], first["page_size"]) == (1, 2)
    listed = first["items"] + second["items"]
    assert [item["user_id"] for item in listed][-1] == "user2"
    entry = listed[0]
    assert entry["job_name"] == "intelligence.weekly" and entry["week_of"] == "2026-01-05"
    assert entry["status"] == "pending" and entry["retry_count"] == 0 and entry["max_retries"] == 3
    assert entry["last_error"].startswith("unknown timezone 'Mars/")
    assert at(entry["next_retry_at"]) > datetime.now(UTC) + timedelta(minutes=50)
    exhausted = client.get("/api/v1/admin/retry-queue?status=exhausted", headers=ADMIN).json
    assert [item["user_id"] for item in exhausted["items"]] == ["user2"]
    assert client.get("/api/v1/admin/retry-queue?user_id=user1", headers=ADMIN).json["total"] == 1
    assert client.get("/api/v1/admin/retry-queue?job=focus.update_profiles", headers=ADMIN).json["total"] == 0


def test_retry_queue_rejects_an_unknown_status(client):
    response = client.get("/api/v1/admin/retry-queue?status=lost", headers=ADMIN)

    assert response.status_code == 422 and "status" in response.json["errors"]["query"]


def test_an_empty_retry_queue_is_an_empty_page(client):
    assert client.get("/api/v1/admin/retry-queue", headers=ADMIN).json == {
        "items": [],
        "total": 0,
        "page": 1,
        "page_size": 20,
    }


# ---------------------------------------------------------------- replay


@pytest.mark.usefixtures("worker")
def test_replay_puts_a_dead_letter_back_to_work_and_the_worker_completes_it(client, db):
    make_user(db, "alice")
    job_id = make_failed_analysis_job(db, "alice")
    dead = client.get("/api/v1/admin/analysis-jobs?status=failed", headers=ADMIN).json
    assert [item["id"] for item in dead["items"]] == [str(job_id)]

    response = client.post(f"/api/v1/admin/analysis-jobs/{job_id}/replay", headers=ADMIN)

    assert response.status_code == 202, response.json
    assert response.json["job_id"] == str(job_id) and response.json["status"] == "pending"
    task_id = response.json["task_id"]
    assert task_id

    def finished():
        db.rollback()
        job = db.get(AnalysisJob, job_id)
        return job if job.status == "completed" else None

    job = wait_for(finished, timeout=60)
    # The default deterministic analyser now succeeds: a fresh attempt budget, the published task.
    assert (job.outcome, job.attempts, job.celery_task_id) == ("analysed", 1, task_id)
    assert client.get("/api/v1/admin/analysis-jobs?status=failed", headers=ADMIN).json["total"] == 0


def test_replay_of_an_unknown_job_is_404(client):
    response = client.post(
        "/api/v1/admin/analysis-jobs/00000000-0000-4000-8000-000000000000/replay", headers=ADMIN
    )

    assert (response.status_code, response.json["code"]) == (404, 404)
    assert "not found" in response.json["message"]


def test_replay_of_a_job_that_is_not_failed_is_409_and_changes_nothing(client, db):
    make_user(db, "alice")
    job = triggers.request_analysis(db, "alice", "work", "manual", analysis_jobs.Rules()).job
    db.commit()

    response = client.post(f"/api/v1/admin/analysis-jobs/{job.id}/replay", headers=ADMIN)

    assert (response.status_code, response.json["code"]) == (409, 409)
    assert response.json["message"].endswith("job is not failed")
    db.rollback()
    assert db.scalar(select(AnalysisJob.status).where(AnalysisJob.id == job.id)) == "pending"


def test_replay_is_409_while_the_same_user_and_context_have_an_open_job(client, db):
    make_user(db, "alice")
    failed = make_failed_analysis_job(db, "alice")
    triggers.request_analysis(db, "alice", "work", "manual", analysis_jobs.Rules(rate_limit_seconds=1))
    db.commit()

    response = client.post(f"/api/v1/admin/analysis-jobs/{failed}/replay", headers=ADMIN)

    assert response.status_code == 409
    assert "another job for this user and context is open" in response.json["message"]
    db.rollback()
    assert db.scalar(select(AnalysisJob.status).where(AnalysisJob.id == failed)) == "failed"
