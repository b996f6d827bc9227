"""Profile maintenance end to end: HTTP API, a real worker, PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import insert, select, text

from focus_app.models import JobRun
from focus_app.models.attributes import ProfileAttribute, ProfileEntity
from focus_app.models.llm import LLMUsageDaily
from focus_app.services.attributes import job as maintenance_job
from focus_app.services.attributes import store
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.usefixtures("worker")

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MESSY = [
    ("fact", "Location", "Ohio", 0),
    ("fact", "home_location", "lives in Columbus, Ohio", 3),
    ("misc", "full name", "Sam Rivera", 1),
    ("misc", "mood", "tired today", 4),
    ("misc", "greeting", "hi there", 4),
    ("interest", "hobby", "hiking", 2),
    ("interest", "likesHiking", "Likes hiking.", 1),
    ("preference", "favourite colour", "blue", 1),
    ("preference", "favorite_color", "green", 5),
]
CONSOLIDATED = {
    ("fact", "home_location", "lives in Columbus, Ohio"),
    ("fact", "name", "Sam Rivera"),
    ("interest", "hobby", "hiking"),
    ("preference", "favorite_color", "green"),
}


def seed_attributes(db, entity_id, rows=MESSY, entity_type="user"):
    """Attributes stated over several days, written the way a service writes them (version bumped)."""
    for category, key, value, days in rows:
        store._bump_version(db, entity_id, entity_type)
        db.execute(
            insert(ProfileAttribute).values(
                entity_id=entity_id,
                entity_type=entity_type,
                category=category,
                key=key,
                value=value,
                confidence=0.7,
                source="chat",
                updated_at=T0 + timedelta(days=days),
            )
        )
    db.commit()


def attributes(db, entity_id, entity_type="user") -> list[tuple]:
    db.rollback()
    rows = db.scalars(
        select(ProfileAttribute)
        .where(ProfileAttribute.entity_id == entity_id, ProfileAttribute.entity_type == entity_type)
        .order_by(ProfileAttribute.category, ProfileAttribute.key)
    ).all()
    return [(r.id, r.category, r.key, r.value, r.confidence, r.source, r.updated_at) for r in rows]


def contents(rows) -> set[tuple[str, str, str]]:
    return {(r[1], r[2], r[3]) for r in rows}


def consolidate_one(celery_app, entity_id, entity_type="user", dry_run=False):
    return celery_app.send_task("maintenance.consolidate_profile", args=[entity_id, entity_type, dry_run])


def run_periodic(celery_app, db, **kwargs) -> tuple[dict, JobRun | None]:
    summary = celery_app.send_task("maintenance.consolidate_profiles", kwargs=kwargs).get(timeout=60)
    if "run_id" not in summary:
        return summary, None

    def finished():
        db.rollback()
        run = db.get(JobRun, summary["run_id"])
        return run if run is not None and run.finished_at is not None else None

    return summary, wait_for(finished)


# --- the attributes API ----------------------------------------------------------------------


def test_attributes_crud_is_scoped_to_the_caller(client, auth):
    alice, bob = auth("alice"), auth("bob")
    url = "/api/v1/profile/attributes"
    created = client.post(url, json={"category": "fact", "key": "name", "value": "Alice"}, headers=alice)
    assert created.status_code == 201
    assert created.json["confidence"] == 0.7 and created.json["source"] == "user"
    restated = client.post(url, json={"category": "fact", "key": "name", "value": "Alice B."}, headers=alice)
    assert restated.status_code == 200 and restated.json["id"] == created.json["id"]
    client.post(url, json={"category": "interest", "key": "hobby", "value": "chess"}, headers=alice)

    listing = client.get(url, headers=alice).json
    assert listing["total"] == 2 and [i["value"] for i in listing["items"]] == ["Alice B.", "chess"]
    assert client.get(url + "?category=interest", headers=alice).json["total"] == 1
    assert client.get(url, headers=bob).json["total"] == 0

    assert client.delete(f"{url}/{created.json['id']}", headers=bob).status_code == 404
    assert client.delete(f"{url}/{created.json['id']}", headers=alice).status_code == 204
    assert client.delete(f"{url}/{created.json['id']}", headers=alice).status_code == 404
    assert client.get(url, headers=alice).json["total"] == 1


@pytest.mark.parametrize(
    "method, path, body, field",
    [
        ("post", "", {"category": "mood", "key": "k", "value": "v"}, "category"),
        ("post", "", {"category": "fact", "key": "", "value": "v"}, "key"),
        ("post", "", {"category": "fact", "key": "k" * 101, "value": "v"}, "key"),
        ("post", "", {"category": "fact", "key": "k", "value": "   "}, "value"),
        ("post", "", {"category": "fact", "key": "k", "value": "v", "confidence": 1.5}, "confidence"),
        ("post", "", {"category": "fact", "key": "k\x00", "value": "v"}, "key"),
        ("post", "", {"category": "fact", "value": "v"}, "key"),
        ("post", "", "not json", "json"),
        ("get", "?category=weird", None, "category"),
        ("get", "?page_size=1000", None, "page_size"),
        ("post", "/consolidate", {"dry_run": "maybe"}, "dry_run"),
        ("post", "/consolidate", {"extra": 1}, "extra"),
    ],
)
def test_bad_input_on_attribute_endpoints_is_422(client, auth, method, path, body, field):
    url = "/api/v1/profile/attributes" + path
    if body == "not json":
        response = client.post(
            url, data="{oops", headers={**auth("alice"), "Content-Type": "application/json"}
        )
    else:
        response = getattr(client, method)(url, json=body, headers=auth("alice"))
    assert response.status_code == 422
    location = response.json["errors"].get("json") or response.json["errors"].get("query")
    assert field in location or field == "json"


def test_attribute_endpoints_need_a_token_and_a_uuid(client, auth):
    assert client.get("/api/v1/profile/attributes").status_code == 401
    assert client.post("/api/v1/profile/attributes/consolidate", json={}).status_code == 401
    assert client.delete("/api/v1/profile/attributes/not-a-uuid", headers=auth("alice")).status_code == 404


# --- dry run and real run --------------------------------------------------------------------


def test_dry_run_explains_and_writes_nothing_then_the_real_run_applies_it(client, auth, db, celery_app):
    seed_attributes(db, "alice")
    before = attributes(db, "alice")

    plan = client.post(
        "/api/v1/profile/attributes/consolidate", json={"dry_run": True}, headers=auth("alice")
    )
    assert plan.status_code == 200
    body = plan.json
    assert body["changed"] and body["consolidator"] == "deterministic"
    assert {(a["category"], a["key"], a["value"]) for a in body["after"]} == CONSOLIDATED
    assert len(body["before"]) == len(MESSY)
    reasons = {d["attribute"]["key"]: d["reason"] for d in body["dropped"]}
    assert reasons["mood"] == "temporary state" and reasons["greeting"] == "greeting"
    assert reasons["home_location"] == "contradicted by a more recent value"  # Location=Ohio, renamed
    assert any(d["attribute"]["key"] == "likes_hiking" for d in body["merged"])
    assert attributes(db, "alice") == before

    queued = client.post(
        "/api/v1/profile/attributes/consolidate", json={"dry_run": False}, headers=auth("alice")
    )
    assert queued.status_code == 202 and queued.json["status"] == "queued"
    task_id = queued.json["task_id"]
    state = wait_for(
        lambda: (
            (j := client.get(f"/api/v1/jobs/{task_id}", headers=auth("alice")).json)["state"]
            in ("SUCCESS", "FAILURE")
            and j
        )
    )
    assert state["state"] == "SUCCESS" and state["result"]["status"] == "applied"
    assert client.get(f"/api/v1/jobs/{task_id}", headers=auth("bob")).status_code == 404

    after = attributes(db, "alice")
    assert contents(after) == CONSOLIDATED
    assert {(r[4], r[5]) for r in after} == {(0.9, "maintenance")}
    listed = client.get("/api/v1/profile/attributes", headers=auth("alice")).json
    assert {(i["category"], i["key"], i["value"]) for i in listed["items"]} == CONSOLIDATED
    run = db.scalars(select(JobRun).where(JobRun.task_id == task_id)).one()
    assert (run.job_name, run.trigger, run.status, run.scope) == (
        "maintenance.consolidate_profile",
        "api",
        "success",
        "user:alice",
    )


def test_consolidating_twice_in_a_row_changes_nothing_the_second_time(db, celery_app):
    seed_attributes(db, "alice")
    assert consolidate_one(celery_app, "alice").get(timeout=60)["status"] == "applied"
    first = attributes(db, "alice")

    second = consolidate_one(celery_app, "alice").get(timeout=60)
    assert second["status"] == "unchanged" and second["after"] == second["before"] == len(CONSOLIDATED)
    assert attributes(db, "alice") == first  # same rows, ids and timestamps


# --- periodic discovery and fan-out ----------------------------------------------------------


def test_periodic_run_finds_exactly_the_changed_entities(db, celery_app, client, auth):
    seed_attributes(db, "alice")
    seed_attributes(db, "nova", rows=[("communication", "Tone", "friendly", 0)], entity_type="bot")
    seed_attributes(db, "carol", rows=[("fact", "name", "Carol", 0)])
    assert consolidate_one(celery_app, "carol").get(timeout=60)["status"] == "applied"
    carol_before = attributes(db, "carol")

    summary, run = run_periodic(celery_app, db)
    assert summary["entities"] == 2
    assert (run.status, run.units_total, run.succeeded, run.failed) == ("success", 2, 2, 0)
    assert contents(attributes(db, "alice")) == CONSOLIDATED
    assert contents(attributes(db, "nova", "bot")) == {("communication", "tone", "friendly")}
    assert attributes(db, "carol") == carol_before

    summary, run = run_periodic(celery_app, db)
    assert summary["entities"] == 0 and run.status == "success"

    client.post(
        "/api/v1/profile/attributes",
        json={"category": "fact", "key": "City", "value": "Toledo"},
        headers=auth("carol"),
    )
    summary, run = run_periodic(celery_app, db)
    assert summary["entities"] == 1
    assert contents(attributes(db, "carol")) == {
        ("fact", "name", "Carol"),
        ("fact", "home_location", "Toledo"),
    }


def test_periodic_dry_run_counts_but_changes_nothing(db, celery_app):
    seed_attributes(db, "alice")
    before = attributes(db, "alice")
    summary, run = run_periodic(celery_app, db, dry_run=True)
    assert summary["dry_run"] and (run.status, run.succeeded) == ("success", 1)
    assert attributes(db, "alice") == before
    db.rollback()
    assert maintenance_job.discover(db) == [("alice", "user")]


# --- atomicity -------------------------------------------------------------------------------


@pytest.fixture
def failing_delete(app, db):
    """A database trigger that fails the replace after its upsert, in the middle of the transaction."""
    engine = app.extensions["db"].engine
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION fail_attribute_delete() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure mid-replace'; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER fail_attribute_delete BEFORE DELETE ON profile_attributes "
                "FOR EACH ROW EXECUTE FUNCTION fail_attribute_delete()"
            )
        )
    yield
    db.rollback()  # the test's session must not hold the table while the trigger is dropped
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER fail_attribute_delete ON profile_attributes"))
        connection.execute(text("DROP FUNCTION fail_attribute_delete()"))


def test_failure_mid_replace_leaves_the_old_attributes_intact(db, celery_app, failing_delete):
    seed_attributes(db, "alice")
    before = attributes(db, "alice")

    summary, run = run_periodic(celery_app, db)
    assert (run.status, run.failed, run.succeeded) == ("failed", 1, 0)
    assert "injected failure mid-replace" in run.error and "user:alice" in run.error
    assert attributes(db, "alice") == before
    db.rollback()
    assert maintenance_job.discover(db) == [("alice", "user")]  # still due for the next run

    with pytest.raises(Exception, match="injected failure"):
        consolidate_one(celery_app, "alice").get(timeout=60)
    assert attributes(db, "alice") == before


# --- switches and job-run history ------------------------------------------------------------


def test_disabled_job_records_skipped_beat_runs_and_changes_nothing(client, db, celery_app):
    seed_attributes(db, "alice")
    before = attributes(db, "alice")
    for job in ("maintenance.consolidate_profiles", "focus.update_profiles"):
        response = client.put(f"/api/v1/admin/job-settings/{job}", json={"enabled": False}, headers=ADMIN)
        assert response.status_code == 200 and response.json["enabled"] is False

    summary, _ = run_periodic(celery_app, db, trigger="beat")
    assert summary == {"status": "skipped", "reason": "job disabled", "published": 0}
    profiles = celery_app.send_task("focus.update_profiles", kwargs={"trigger": "beat"}).get(timeout=60)
    assert profiles["status"] == "skipped"
    assert attributes(db, "alice") == before

    skipped = client.get("/api/v1/admin/job-runs?status=skipped", headers=ADMIN).json
    assert skipped["total"] == 2
    assert {i["job_name"] for i in skipped["items"]} == {
        "maintenance.consolidate_profiles",
        "focus.update_profiles",
    }
    assert all(i["result"] == {"reason": "job disabled"} for i in skipped["items"])

    settings = {
        s["job_name"]: s["enabled"] for s in client.get("/api/v1/admin/job-settings", headers=ADMIN).json
    }
    assert (
        settings["maintenance.consolidate_profiles"] is False and settings["focus.update_profiles"] is False
    )

    client.put(
        "/api/v1/admin/job-settings/maintenance.consolidate_profiles", json={"enabled": True}, headers=ADMIN
    )
    summary, run = run_periodic(celery_app, db, trigger="beat")
    # Re-enabled: this interval's beat slot is already taken by the skip, a manual run goes ahead.
    assert summary["status"] == "skipped" and "already ran" in summary["reason"]
    summary, run = run_periodic(celery_app, db, trigger="manual")
    assert run.status == "success" and contents(attributes(db, "alice")) == CONSOLIDATED


def test_job_runs_filters(client, db, celery_app):
    seed_attributes(db, "alice")
    run_periodic(celery_app, db)
    consolidate_one(celery_app, "alice").get(timeout=60)
    url = "/api/v1/admin/job-runs"
    everything = client.get(url, headers=ADMIN).json
    assert everything["total"] == 2
    assert client.get(url + "?job=maintenance.consolidate_profile", headers=ADMIN).json["total"] == 1
    assert client.get(url + "?status=failed", headers=ADMIN).json["total"] == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get(url, query_string={"since": future}, headers=ADMIN).json["total"] == 0
    assert client.get(url, query_string={"until": future}, headers=ADMIN).json["total"] == 2
    assert client.get(url + "?page_size=1&page=2", headers=ADMIN).json["items"][0]["job_name"] == (
        "maintenance.consolidate_profiles"
    )


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("get", "/job-runs?status=done", None, 422),
        ("get", "/job-runs?since=yesterday", None, 422),
        ("get", "/job-runs?since=2026-01-01T00:00:00", None, 422),  # no timezone
        ("get", "/job-runs?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", None, 422),
        ("get", "/job-runs?page=0", None, 422),
        ("put", "/job-settings/maintenance.consolidate_profiles", {"enabled": "no way"}, 422),
        ("put", "/job-settings/maintenance.consolidate_profiles", {}, 422),
        ("put", "/job-settings/no.such.job", {"enabled": False}, 404),
    ],
)
def test_bad_input_on_admin_endpoints(client, method, path, body, status):
    response = getattr(client, method)("/api/v1/admin" + path, json=body, headers=ADMIN)
    assert response.status_code == status
    assert response.json["message"]


def test_admin_endpoints_need_the_key(client, auth):
    assert client.get("/api/v1/admin/job-runs").status_code == 401
    assert (
        client.get("/api/v1/admin/job-runs", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 403
    )
    assert client.get("/api/v1/admin/job-settings", headers=auth("alice")).status_code == 401


# --- bad task arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, args, kwargs, message",
    [
        ("maintenance.consolidate_profile", [], {"entity_id": 42}, "entity_id"),
        ("maintenance.consolidate_profile", ["alice", "robot"], {}, "entity_type"),
        ("maintenance.consolidate_profile", ["alice", "user", "yes"], {}, "dry_run"),
        ("maintenance.consolidate_profile", ["alice"], {"run_id": "not-a-uuid", "unit_no": 0}, "run_id"),
        ("maintenance.consolidate_profile", ["alice"], {"unit_no": 0}, "go together"),
        ("maintenance.consolidate_profiles", [], {"trigger": "cron"}, "trigger"),
    ],
)
def test_bad_task_arguments_fail_the_task_with_a_reason(celery_app, db, name, args, kwargs, message):
    with pytest.raises(Exception, match=message):
        celery_app.send_task(name, args=args, kwargs=kwargs).get(timeout=60)
    assert celery_app.send_task("maintenance.consolidate_profile", args=["ok"]).get(timeout=60)["status"]


# --- the LLM path against a loopback stub ----------------------------------------------------


class StubModel:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 answering whatever `answer` holds."""

    def __init__(self):
        self.answer = ""
        self.prompts: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.prompts.append(body["messages"][-1]["content"])
                payload = json.dumps(
                    {
                        "model": "stub",
                        "choices": [{"message": {"role": "assistant", "content": stub.answer}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def stub_model(app):
    stub = StubModel()
    original = app.extensions["settings"]
    app.extensions["settings"] = dataclasses.replace(original, llm_provider="openai", llm_base_url=stub.url)
    yield stub
    app.extensions["settings"] = original
    stub.server.shutdown()


def test_malformed_model_output_changes_nothing_and_records_the_error(
    db, celery_app, client, auth, stub_model
):
    seed_attributes(db, "alice")
    before = attributes(db, "alice")
    stub_model.answer = "Sure! Here is the cleaned profile: {fact: home_location = Ohio}"

    summary, run = run_periodic(celery_app, db)
    assert (run.status, run.failed) == ("failed", 1)
    assert "malformed model output" in run.error
    assert "MERGE duplicates" in stub_model.prompts[0] and "fact: Location = Ohio" in stub_model.prompts[0]
    assert attributes(db, "alice") == before

    plan = client.post("/api/v1/profile/attributes/consolidate", json={}, headers=auth("alice")).json
    assert plan["changed"] is False and "malformed model output" in plan["error"]

    with pytest.raises(maintenance_job.ConsolidationFailed):
        consolidate_one(celery_app, "alice").get(timeout=60)
    standalone = db.scalars(select(JobRun).where(JobRun.job_name == "maintenance.consolidate_profile")).one()
    assert standalone.status == "failed" and "malformed model output" in standalone.error
    assert attributes(db, "alice") == before


def test_model_answer_in_a_fenced_block_is_applied(db, celery_app, stub_model):
    seed_attributes(db, "alice")
    stub_model.answer = (
        "Consolidated:\n```json\n"
        '{"fact": {"home_location": "lives in Columbus, Ohio", "name": "Sam Rivera"},'
        ' "interest": {"hobby": "hiking"}, "preference": {"favorite_color": "green"}}\n```'
    )
    result = consolidate_one(celery_app, "alice").get(timeout=60)
    assert result["status"] == "applied" and result["consolidator"] == "llm:openai"
    assert contents(attributes(db, "alice")) == CONSOLIDATED
    db.rollback()
    entity = db.get(ProfileEntity, ("alice", "user"))
    assert entity.attributes_version == entity.consolidated_version


def test_job_runs_window_with_an_offset_postgresql_cannot_store_is_not_a_500(client):
    # Found by the fuzzer: ISO allows +16:00, PostgreSQL's timestamptz does not.
    response = client.get("/api/v1/admin/job-runs?since=2000-01-01T00:00:00%2B16:00", headers=ADMIN)
    assert response.status_code == 200
    too_early = client.get("/api/v1/admin/job-runs?since=0001-01-01T00:00:00-16:00", headers=ADMIN)
    assert too_early.status_code in (200, 422)


def test_a_consolidation_waits_for_its_turn_and_fails_nothing(db, celery_app, stub_model, app, monkeypatch):
    """Two entities, one model call per 3 s window: the second unit's task is retried when its turn
    comes (Celery RETRY, with the reason), the run counts both as done."""
    monkeypatch.setitem(
        app.extensions,
        "settings",
        dataclasses.replace(
            app.extensions["settings"], llm_requests_per_minute=1, llm_limit_window_seconds=3
        ),
    )
    stub_model.answer = json.dumps(
        {
            "fact": {"home_location": "lives in Columbus, Ohio", "name": "Sam Rivera"},
            "interest": {"hobby": "hiking"},
            "preference": {"favorite_color": "green"},
        }
    )
    for entity in ("alice", "bob"):
        seed_attributes(db, entity)

    summary, run = run_periodic(celery_app, db)

    assert (run.status, run.succeeded, run.failed) == ("success", 2, 0), run.error
    assert contents(attributes(db, "alice")) == contents(attributes(db, "bob")) == CONSOLIDATED
    assert len(stub_model.prompts) == 2
    db.rollback()
    usage = db.scalars(select(LLMUsageDaily).where(LLMUsageDaily.family == "consolidation")).one()
    assert usage.calls == 2 and usage.waits >= 1
