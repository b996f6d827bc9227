"""Analysis jobs end to end: API triggers, the broker, a real worker, PostgreSQL (seed 002)."""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from focus_app.models.analysis import AnalysisJob, ChatMessage, ProfileInterpretation
from focus_app.services.analysis import jobs as analysis_jobs
from focus_app.services.analysis import triggers
from focus_app.services.focus.users import ensure_user
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.conftest import wait_for
from tests.integration.factories import make_analysed_job, make_user
from workers.publish import publish_analysis_runs

pytestmark = pytest.mark.usefixtures("worker", "analysis_jobs_settle")

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
WORK_MESSAGES = [
    "Work was stressful again, the night shift at the hospital drained me.",
    "I work as a nurse and the night shift keeps getting longer.",
    "Slept badly after the night shift, tired and anxious.",
    "My sister is visiting next week, I am excited about that.",
    "The hospital hired two new nurses, work feels a bit easier.",
    "Another night shift, but the team was supportive and kind.",
    "I love the quiet mornings after work.",
    "Worried about the exam for my nursing certificate.",
    "Passed the exam! Feeling proud and relieved, work is good.",
    "Night shift again tomorrow, but I feel calm and confident.",
]


def db_now(db):
    return db.scalar(select(func.now()))


def add_messages(db, user_id: str, context: str, texts, *, ago: timedelta = timedelta(0), off=False):
    ensure_user(db, user_id)
    now = db_now(db)
    db.execute(
        insert(ChatMessage),
        [
            {
                "user_id": user_id,
                "context_type": context,
                "content": t,
                "off_the_record": off,
                "created_at": now - ago,
            }
            for t in texts
        ],
    )
    db.commit()


def post_message(client, headers, content, context="work", off=False):
    response = client.post(
        "/api/v1/chat/messages",
        json={"context_type": context, "content": content, "off_the_record": off},
        headers=headers,
    )
    assert response.status_code == 201, response.json
    return response.json


def fresh(db) -> None:
    """Forget what this session loaded: the worker changes rows behind its back."""
    db.rollback()
    db.expire_all()


def job_of(db, job_id) -> AnalysisJob:
    fresh(db)
    return db.get(AnalysisJob, job_id)


def wait_status(db, job_id, *statuses) -> AnalysisJob:
    return wait_for(lambda: (j := job_of(db, job_id)) is not None and j.status in statuses and j)


def jobs(db, user_id) -> list[AnalysisJob]:
    fresh(db)
    return list(db.scalars(select(AnalysisJob).where(AnalysisJob.user_id == user_id)))


# --- triggers -------------------------------------------------------------------------------


def test_chat_trigger_fires_at_the_fifth_new_on_the_record_message(client, auth, db):
    headers = auth("chatty")
    for n in range(3):
        assert post_message(client, headers, f"secret {n}", off=True)["analysis"]["status"] == "not_due"
    for n in range(4):
        assert post_message(client, headers, f"message {n}")["analysis"]["status"] == "not_due"
    assert jobs(db, "chatty") == []

    fifth = post_message(client, headers, "message 4")["analysis"]

    assert fifth["status"] == "enqueued"
    job = wait_status(db, fifth["job_id"], "completed")
    assert (job.priority, job.source, job.outcome) == ("low", "chat", "insufficient_data")
    assert job.messages_analyzed == 5 and job.error.startswith("insufficient data")
    # The count starts again after that analysis.
    assert post_message(client, headers, "message 5")["analysis"]["status"] == "not_due"


def test_chat_trigger_analyses_and_the_interpretation_is_served(client, auth, db):
    headers = auth("nurse")
    post_message(client, headers, WORK_MESSAGES[0])
    add_messages(db, "nurse", "work", WORK_MESSAGES[1:9])
    decision = post_message(client, headers, WORK_MESSAGES[9])["analysis"]

    job = wait_status(db, decision["job_id"], "completed")

    assert (job.outcome, job.messages_analyzed, job.analyser) == ("analysed", 10, "local")
    body = client.get("/api/v1/profile/interpretations?context_type=work", headers=headers).json
    [item] = body["interpretations"]
    themes = [t["theme"] for t in item["interpretation"]["themes"]]
    assert "night" in themes and "work" in themes
    assert any("nurse" in fact for fact in item["interpretation"]["notable_facts"])
    assert 0 < item["confidence"] < 1 and item["messages_analyzed"] == 10
    assert body["analysis"] == [
        {"context_type": "work", "status": "not_due", "job_id": None, "retry_after": None}
    ]


def test_view_trigger_when_missing_or_older_than_an_hour(client, auth, db):
    headers = auth("viewer")
    client.get("/api/v1/profile/interpretations", headers=headers)
    missing = client.get("/api/v1/profile/interpretations?context_type=family", headers=headers).json
    assert missing["interpretations"] == []
    [decision] = missing["analysis"]
    assert decision["status"] == "enqueued"
    assert wait_status(db, decision["job_id"], "completed").priority == "medium"

    db.execute(
        insert(ProfileInterpretation).values(
            user_id="viewer",
            context_type="work",
            interpretation={"summary": "x"},
            confidence=0.5,
            messages_analyzed=12,
            analyzed_at=func.now() - timedelta(minutes=59),
        )
    )
    db.commit()
    fresh = client.get("/api/v1/profile/interpretations?context_type=work", headers=headers).json
    assert fresh["analysis"][0]["status"] == "not_due" and len(fresh["interpretations"]) == 1

    db.execute(update(ProfileInterpretation).values(analyzed_at=func.now() - timedelta(minutes=61)))
    db.commit()
    stale = client.get("/api/v1/profile/interpretations?context_type=work", headers=headers).json
    assert stale["analysis"][0]["status"] == "enqueued"
    assert stale["interpretations"][0]["interpretation"] == {"summary": "x"}


def test_manual_refresh_rate_limit_and_open_job(client, auth, db):
    headers = auth("manual")
    make_user(db, "manual")
    make_analysed_job(db, "manual", "work", minutes_ago=30)

    limited = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=headers)
    assert limited.status_code == 429
    assert 1790 <= int(limited.headers["Retry-After"]) <= 1800

    db.execute(update(AnalysisJob).values(created_at=func.now() - timedelta(minutes=61)))
    db.commit()
    accepted = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=headers)
    assert accepted.status_code == 202
    assert (accepted.json["status"], accepted.json["job"]["priority"]) == ("enqueued", "high")

    open_job = triggers.request_analysis(db, "manual", "family", "chat", analysis_jobs.Rules())
    again = client.post("/api/v1/profile/analyze", json={"context_type": "family"}, headers=headers)
    assert again.status_code == 200 and again.json["job"]["id"] == str(open_job.job.id)

    job_id = accepted.json["job"]["id"]
    wait_status(db, job_id, "completed")
    status = client.get(f"/api/v1/profile/analyze/{job_id}", headers=headers)
    assert status.status_code == 200
    assert status.json["attempts"] == 1 and status.json["duration_ms"] is not None
    assert client.get(f"/api/v1/profile/analyze/{job_id}", headers=auth("other")).status_code == 404
    still_open = client.get(f"/api/v1/profile/analyze/{open_job.job.id}", headers=headers)
    assert still_open.json["status"] == "pending"


def test_bad_input_is_422_and_auth_is_required(client, auth):
    headers = auth("careless")
    bad = client.post(
        "/api/v1/chat/messages", json={"context_type": "Not OK!", "content": ""}, headers=headers
    )
    assert bad.status_code == 422
    assert set(bad.json["errors"]["json"]) == {"context_type", "content"}
    assert client.post("/api/v1/profile/analyze", json={}, headers=headers).status_code == 422
    assert (
        client.get("/api/v1/profile/interpretations?context_type=a%20b", headers=headers).status_code == 422
    )
    assert client.get("/api/v1/profile/analyze/not-a-uuid", headers=headers).status_code == 404
    assert client.post("/api/v1/chat/messages", json={"context_type": "x", "content": "y"}).status_code == 401
    assert client.get("/api/v1/admin/analysis-jobs").status_code == 401
    assert client.get("/api/v1/admin/analysis-jobs?status=lost", headers=ADMIN).status_code == 422


# --- dedupe and priorities (need a job that stays busy: the gated LLM stub) ----------------


def test_concurrent_manual_requests_make_one_job(app, auth, db, llm):
    make_user(db, "crowd")
    add_messages(db, "crowd", "work", WORK_MESSAGES)
    llm.gated = True
    headers = auth("crowd")
    responses = []

    def request():
        responses.append(
            app.test_client().post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=headers)
        )

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    llm.release(10)

    assert sorted(r.status_code for r in responses) == [200] * 15 + [202]
    assert len({r.json["job"]["id"] for r in responses}) == 1
    [job] = jobs(db, "crowd")
    assert wait_status(db, job.id, "completed").tokens_in == 1200
    with pytest.raises(IntegrityError):
        for _ in range(2):
            db.execute(
                insert(AnalysisJob).values(user_id="crowd", context_type="x", priority="low", source="chat")
            )
    db.rollback()


def test_high_priority_runs_before_medium_and_low(db, llm, worker, publish):
    llm.gated = True
    busy_threads = worker.concurrency
    users = [f"busy{n}" for n in range(busy_threads)] + ["low", "medium", "high"]
    for user in users:
        make_user(db, user)
        add_messages(db, user, "work", WORK_MESSAGES + [f"marker {user}"])
    for user in users[:busy_threads]:
        publish(triggers.request_analysis(db, user, "work", "manual", analysis_jobs.Rules()))
    wait_for(lambda: len(llm.requests) == busy_threads)

    for user, source in (("low", "chat"), ("medium", "view"), ("high", "manual")):
        publish(triggers.request_analysis(db, user, "work", source, analysis_jobs.Rules()))
    for n in range(3):
        llm.release()  # frees one worker thread, which takes the most urgent waiting job
        wait_for(lambda n=n: len(llm.requests) == busy_threads + n + 1)
    llm.release(busy_threads + 3)

    order = [_prompt_user(llm.requests[busy_threads + n]) for n in range(3)]
    assert order == ["high", "medium", "low"]
    for user in users:
        [job] = jobs(db, user)
        wait_status(db, job.id, "completed")


@pytest.fixture
def publish(app):
    """Publish a job the way the API and the sweeper do (needs the app context)."""

    def send(decision):
        with app.app_context():
            publish_analysis_runs([analysis_jobs.run_message(decision.job)])

    return send


def _prompt_user(request) -> str:
    return re.search(r"marker (\w+)", request["body"]["messages"][-1]["content"]).group(1)


# --- retries, dead letters, replay ------------------------------------------------------


def test_provider_errors_retry_then_dead_letter_then_replay(client, auth, db, llm, celery_app):
    headers = auth("unlucky")
    add_messages(db, "unlucky", "work", WORK_MESSAGES)
    llm.default = "error500"
    job_id = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=headers).json[
        "job"
    ]["id"]

    failed = wait_status(db, job_id, "failed")

    assert failed.attempts == 4 and len(llm.requests) == 4
    assert "HTTP 500" in failed.error
    assert db.scalar(select(func.count()).select_from(ProfileInterpretation)) == 0
    dead = client.get("/api/v1/admin/analysis-jobs?status=failed", headers=ADMIN).json
    assert [item["id"] for item in dead["items"]] == [job_id] and dead["total"] == 1

    llm.default = "good"
    result = celery_app.send_task("analysis.replay", args=[job_id]).get(timeout=30)

    assert result["replayed"] == [job_id]
    job = wait_status(db, job_id, "completed")
    assert (job.outcome, job.attempts, job.error) == ("analysed", 1, None)
    assert (job.tokens_in, job.tokens_out, float(job.cost_usd)) == (1200, 300, 0.0027)
    assert job.analyser == "llm:openai:stub-model"
    assert client.get("/api/v1/admin/analysis-jobs?status=failed", headers=ADMIN).json["total"] == 0


def test_malformed_output_is_retried_and_logged_never_half_stored(client, auth, db, llm, caplog):
    headers = auth("garbled")
    add_messages(db, "garbled", "work", WORK_MESSAGES)
    llm.script = ["malformed", "fenced"]
    with caplog.at_level(logging.WARNING, logger="analysis_jobs"):
        job_id = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=headers).json[
            "job"
        ]["id"]
        job = wait_status(db, job_id, "completed")
    assert job.attempts == 2 and job.tokens_in == 2400
    assert any("won't do JSON" in record.getMessage() for record in caplog.records)
    stored = db.scalar(select(ProfileInterpretation).where(ProfileInterpretation.user_id == "garbled"))
    assert stored.interpretation["notable_facts"] == ["works as a nurse"]
    assert float(stored.confidence) <= 0.8

    llm.default = "malformed"
    db.execute(update(AnalysisJob).values(created_at=func.now() - timedelta(hours=2)))
    db.commit()
    second = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=headers).json[
        "job"
    ]["id"]
    assert "holds no parseable JSON" in wait_status(db, second, "failed").error
    db.rollback()
    assert (
        db.scalar(select(ProfileInterpretation.job_id).where(ProfileInterpretation.user_id == "garbled"))
        == job.id
    )


def test_anthropic_messages_api_shape(db, settings_with, llm, publish):
    settings_with(llm_provider="anthropic", llm_api_key="sk-test", llm_base_url=llm.url)
    make_user(db, "claude")
    add_messages(db, "claude", "work", WORK_MESSAGES)
    publish(triggers.request_analysis(db, "claude", "work", "manual", analysis_jobs.Rules()))
    [job] = jobs(db, "claude")
    job = wait_status(db, job.id, "completed")
    assert (job.tokens_in, job.tokens_out) == (1500, 500)
    request = llm.requests[0]
    assert request["path"] == "/v1/messages" and request["headers"]["x-api-key"] == "sk-test"
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert "Night shift again tomorrow" in request["body"]["messages"][0]["content"]


# --- recovery -------------------------------------------------------------------------------


def test_stuck_jobs_are_requeued_or_failed(db, celery_app):
    for user in ("stuck", "exhausted"):
        make_user(db, user)
    now = db_now(db)
    db.execute(
        insert(AnalysisJob),
        [
            {
                "user_id": "stuck",
                "context_type": "work",
                "priority": "low",
                "source": "chat",
                "status": "processing",
                "attempts": 1,
                "started_at": now - timedelta(minutes=10),
            },
            {
                "user_id": "exhausted",
                "context_type": "work",
                "priority": "low",
                "source": "chat",
                "status": "processing",
                "attempts": 4,
                "started_at": now - timedelta(minutes=10),
            },
            {
                "user_id": "exhausted",
                "context_type": "fresh",
                "priority": "low",
                "source": "chat",
                "status": "processing",
                "attempts": 1,
                "started_at": now - timedelta(minutes=2),
            },
        ],
    )
    db.commit()

    celery_app.send_task("analysis.requeue_stale")

    [stuck] = jobs(db, "stuck")
    recovered = wait_status(db, stuck.id, "completed")
    assert recovered.attempts == 2 and recovered.outcome == "insufficient_data"
    by_context = {j.context_type: j for j in jobs(db, "exhausted")}
    assert by_context["work"].status == "failed" and "timed out" in by_context["work"].error
    assert by_context["fresh"].status == "processing"


def test_lost_messages_are_published_again(db, celery_app):
    make_user(db, "forgotten")
    # PostgreSQL has the job, the broker does not (Redis flushed, or down when it was enqueued).
    lost = triggers.request_analysis(db, "forgotten", "work", "chat", analysis_jobs.Rules()).job
    recent = triggers.request_analysis(db, "forgotten", "fresh", "chat", analysis_jobs.Rules()).job
    db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == lost.id)
        .values(next_attempt_at=func.now() - timedelta(minutes=5))
    )
    db.commit()

    summary = celery_app.send_task("analysis.requeue_stale").get(timeout=30)

    assert (summary["republished"], summary["published"]) == (1, 1)
    assert wait_status(db, lost.id, "completed").celery_task_id is not None
    assert job_of(db, recent.id).status == "pending"


def test_failed_jobs_older_than_a_week_are_archived(client, db, celery_app):
    make_user(db, "old")
    now = db_now(db)
    db.execute(
        insert(AnalysisJob),
        [
            {
                "user_id": "old",
                "context_type": c,
                "priority": "low",
                "source": "chat",
                "status": "failed",
                "error": "boom",
                "completed_at": now - timedelta(days=d),
            }
            for c, d in (("ancient", 8), ("recent", 6))
        ],
    )
    db.commit()

    result = celery_app.send_task("ops.archive_failed_analysis_jobs")
    wait_for(
        lambda: client.get("/api/v1/admin/analysis-jobs?archived=true", headers=ADMIN).json["total"] == 1
    )

    listed = client.get("/api/v1/admin/analysis-jobs?status=failed", headers=ADMIN).json
    assert [item["context_type"] for item in listed["items"]] == ["recent"]
    replay = celery_app.send_task("analysis.replay").get(timeout=30)
    assert (replay["replayed"], replay["matched"], replay["status"]) == (1, 1, "success")
    assert result.id


def test_replay_with_a_bad_job_id_fails_that_task_clearly(celery_app):
    with pytest.raises(Exception, match="job_id must be a UUID"):
        celery_app.send_task("analysis.replay", args=["nope"]).get(timeout=30)
