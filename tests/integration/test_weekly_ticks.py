"""The weekly brief at Monday 02:00 in each user's own timezone, through beat's ticks.

The process clock (and so the in-process worker's) is moved with time-machine to chosen instants
of March 2026, around the US clock change; PostgreSQL, Redis and the worker are real. Every user
is created long before, with their briefs done up to the week of 2026-02-23, so the week owed is
the week of 2026-03-02 (W), which ends at local Monday 2026-03-09 00:00.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select, text, update

from focus_app.models import JobRun, User
from focus_app.models.intelligence import UserPreference, WeeklyBrief
from tests.conftest import TEST_ADMIN_KEY, celery_call
from tests.integration.conftest import wait_for
from tests.integration.factories import make_session, make_user

pytestmark = pytest.mark.usefixtures("worker")

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
W = date(2026, 3, 2)
SIGNED_UP = datetime(2025, 11, 1, tzinfo=UTC)
# Monday 2026-03-09 02:00 local, in UTC.
DUE = {
    "Pacific/Kiritimati": datetime(2026, 3, 8, 12, 0, tzinfo=UTC),  # UTC+14
    "Pacific/Chatham": datetime(2026, 3, 8, 12, 15, tzinfo=UTC),  # UTC+13:45 (summer)
    "Asia/Kathmandu": datetime(2026, 3, 8, 20, 15, tzinfo=UTC),  # UTC+5:45
    "America/Los_Angeles": datetime(2026, 3, 9, 9, 0, tzinfo=UTC),  # PDT since Sunday 02:00 PST
}


def local(zone: str, value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def user_briefed_until(db, user_id: str, zone: str, brief_week: date | None = date(2026, 2, 23)) -> str:
    make_user(db, user_id, zone, created_at=SIGNED_UP)
    db.execute(update(User).where(User.id == user_id).values(brief_week=brief_week))
    db.commit()
    return user_id


def tick(celery_app, db) -> dict:
    """What beat sends every five minutes; waits until the run it started (if any) has finished."""
    result = celery_app.send_task("intelligence.weekly", kwargs={"trigger": "beat"}).get(timeout=60)
    if result.get("run_id"):
        wait_for(lambda: db.rollback() or db.get(JobRun, result["run_id"]).finished_at)
    return result


def briefs_of(db, user_id: str) -> list[date]:
    db.rollback()
    return list(
        db.scalars(select(WeeklyBrief.week_of).where(WeeklyBrief.user_id == user_id).order_by("week_of"))
    )


def runs_count(db) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(JobRun).where(JobRun.job_name == "intelligence.weekly"))


def test_sunday_2330_sessions_land_in_the_week_that_ends_at_each_users_own_midnight(
    client, auth, celery_app, db
):
    for zone in DUE:
        user = user_briefed_until(db, zone, zone)
        make_session(db, user, local(zone, "2026-03-01T23:30"), 25)  # Sunday 23:30 of the week before
        make_session(db, user, local(zone, "2026-03-02T00:10"), 30)  # Monday 00:10: W begins
        make_session(db, user, local(zone, "2026-03-08T23:30"), 40)  # Sunday 23:30: W's last evening
        make_session(db, user, local(zone, "2026-03-09T00:30"), 50)  # Monday 00:30: the next week

    for zone, due in sorted(DUE.items(), key=lambda item: item[1]):
        with time_machine.travel(due - timedelta(minutes=1)):
            tick(celery_app, db)
            assert briefs_of(db, zone) == [], f"{zone}: a brief before its Monday 02:00"
        with time_machine.travel(due + timedelta(minutes=1)):
            tick(celery_app, db)
            assert briefs_of(db, zone) == [W], zone
            body = client.get(f"/api/v1/intelligence/briefs/{W}", headers=auth(zone)).json
        stats = body["week_stats"]
        assert (stats["sessions"], stats["focus_minutes"]) == (2, 70), zone
        assert stats["by_day"]["Sun"] == {"sessions": 1, "minutes": 40}, zone
        assert stats["by_day"]["Mon"] == {"sessions": 1, "minutes": 30}, zone
        assert body["velocity"]["previous_week_minutes"] == 25, zone

    # Eight ticks, four of them found someone due: one run each, the idle ones left no row.
    assert runs_count(db) == 4
    with time_machine.travel(datetime(2026, 3, 9, 9, 6, tzinfo=UTC)):
        assert tick(celery_app, db)["status"] == "idle"
    assert runs_count(db) == 4


@pytest.mark.slow
def test_the_thursday_catch_up_call_writes_every_missing_brief(celery_app, db, test_settings):
    """Beat was down from before the weekend until Thursday; the call an operator types then."""
    for zone in (*DUE, "UTC", "Europe/Berlin"):
        user_briefed_until(db, zone, zone)
        make_session(db, zone, local(zone, "2026-03-08T23:30"), 40)
    two_weeks_down = user_briefed_until(db, "two-weeks-down", "Asia/Tokyo", date(2026, 2, 16))
    newcomer = make_user(db, "newcomer", "Asia/Tokyo", created_at=datetime(2026, 3, 10, tzinfo=UTC))

    with time_machine.travel(datetime(2026, 3, 12, 10, 0, tzinfo=UTC)):  # Thursday
        task_id = celery_call(test_settings, "intelligence.weekly", '{"trigger": "beat"}')
        result = celery_app.AsyncResult(task_id).get(timeout=60)
        wait_for(lambda: db.rollback() or db.get(JobRun, result["run_id"]).finished_at)

    assert result["weeks"] == {"2026-02-23": 1, "2026-03-02": 7}
    for zone in (*DUE, "UTC", "Europe/Berlin"):
        assert briefs_of(db, zone) == [W], zone
        brief = db.scalar(select(WeeklyBrief).where(WeeklyBrief.user_id == zone))
        assert brief.week_stats["by_day"]["Sun"]["minutes"] == 40, zone
    assert briefs_of(db, two_weeks_down) == [date(2026, 2, 23), W]
    assert briefs_of(db, newcomer) == []  # signed up after the week came due
    run = db.get(JobRun, result["run_id"])
    assert (run.trigger, run.status, run.succeeded, run.failed) == ("beat", "success", 8, 0)


def test_two_beats_overlapping_ticks_and_a_manual_trigger_write_each_brief_once(client, celery_app, db):
    zones = list(DUE) + ["UTC", "Europe/Berlin"]
    users = [user_briefed_until(db, f"u-{n:03}", zones[n % len(zones)]) for n in range(150)]

    with time_machine.travel(datetime(2026, 3, 9, 9, 1, tzinfo=UTC)):  # every one of them is due
        sent = [celery_app.send_task("intelligence.weekly", kwargs={"trigger": "beat"}) for _ in range(3)]
        manual = client.post("/api/v1/admin/intelligence/trigger", json={}, headers=ADMIN)
        assert manual.status_code == 202 and manual.json["week_of"] == W.isoformat()
        results = [result.get(timeout=60) for result in sent]
        results.append(celery_app.AsyncResult(manual.json["task_id"]).get(timeout=60))

        def all_finished():
            db.rollback()
            return db.scalar(select(func.count()).where(JobRun.finished_at.is_(None))) == 0

        wait_for(all_finished)

    assert db.scalar(select(func.count()).select_from(WeeklyBrief)) == len(users)
    assert db.scalar(select(func.count()).select_from(WeeklyBrief).where(WeeklyBrief.week_of != W)) == 0
    # Each brief counted as written by exactly one run, and planned by exactly one tick.
    assert db.scalar(select(func.sum(JobRun.succeeded))) == len(users)
    planned = db.scalars(select(JobRun.result["users"].as_integer()).where(JobRun.trigger == "beat")).all()
    assert sum(planned) == len(users), planned
    assert {result["status"] for result in results} <= {"success", "idle"}
    # A later tick finds nobody due and leaves no row.
    before = runs_count(db)
    with time_machine.travel(datetime(2026, 3, 9, 9, 6, tzinfo=UTC)):
        assert tick(celery_app, db)["status"] == "idle"
    assert runs_count(db) == before


def test_a_user_who_moves_gets_one_brief_for_the_week_in_the_zone_they_have_when_it_comes_due(
    client, auth, celery_app, db
):
    east_to_west = user_briefed_until(db, "east-to-west", "Asia/Tokyo")
    west_to_east = user_briefed_until(db, "west-to-east", "America/Los_Angeles")
    # Sunday 2026-03-08 23:30 in Tokyo is 14:30 UTC: Sunday 07:30 in Los Angeles.
    for user in (east_to_west, west_to_east):
        make_session(db, user, datetime(2026, 3, 8, 14, 30, tzinfo=UTC), 45)
    tokyo_due = datetime(2026, 3, 8, 17, 0, tzinfo=UTC)  # Monday 02:00 JST

    with time_machine.travel(datetime(2026, 3, 4, 12, tzinfo=UTC)):  # Wednesday
        moved = client.patch("/api/v1/me", json={"timezone": "Asia/Tokyo"}, headers=auth(west_to_east))
        assert moved.status_code == 200
    with time_machine.travel(tokyo_due + timedelta(minutes=1)):
        tick(celery_app, db)
        moved = client.patch(
            "/api/v1/me", json={"timezone": "America/Los_Angeles"}, headers=auth(east_to_west)
        )
        assert moved.status_code == 200
    with time_machine.travel(DUE["America/Los_Angeles"] + timedelta(minutes=1)):
        tick(celery_app, db)

    for user in (east_to_west, west_to_east):
        assert briefs_of(db, user) == [W], user
        brief = db.scalar(select(WeeklyBrief).where(WeeklyBrief.user_id == user))
        assert brief.week_stats["by_day"]["Sun"] == {"sessions": 1, "minutes": 45}  # Tokyo's Sunday

    # The next week comes due at Monday 02:00 in Los Angeles for the one who moved there.
    with time_machine.travel(datetime(2026, 3, 15, 17, 1, tzinfo=UTC)):  # Tokyo's Monday 02:00
        tick(celery_app, db)
    assert briefs_of(db, east_to_west) == [W]
    assert briefs_of(db, west_to_east) == [W, W + timedelta(days=7)]
    with time_machine.travel(datetime(2026, 3, 16, 9, 1, tzinfo=UTC)):
        tick(celery_app, db)
    assert briefs_of(db, east_to_west) == [W, W + timedelta(days=7)]


def test_brief_preferences_are_honoured_and_turning_briefs_on_brings_the_week(client, auth, celery_app, db):
    off = user_briefed_until(db, "off", "Europe/Berlin")
    db.add(UserPreference(user_id=off, intelligence_generation_enabled=False))
    db.commit()
    berlin_due = datetime(2026, 3, 9, 1, 0, tzinfo=UTC)

    with time_machine.travel(berlin_due + timedelta(minutes=1)):
        tick(celery_app, db)
    assert briefs_of(db, off) == []

    with time_machine.travel(datetime(2026, 3, 10, 8, tzinfo=UTC)):
        response = client.patch("/api/v1/me", json={"weekly_brief": {"enabled": True}}, headers=auth(off))
        assert response.status_code == 200
        tick(celery_app, db)
    assert briefs_of(db, off) == [W]


def test_the_deadline_check_counts_users_due_for_four_hours_and_their_briefs(client, celery_app, db):
    for zone in DUE:
        user_briefed_until(db, zone, zone)
    # Monday 12:00 UTC is 02:00 in Honolulu: W is due, but not for four hours yet; the week
    # before is what counts for this user.
    honolulu = user_briefed_until(db, "honolulu", "Pacific/Honolulu")
    # Signed up on Sunday after W came due in Kathmandu: their first week is the next one.
    make_user(db, "newcomer", "Asia/Kathmandu", created_at=datetime(2026, 3, 8, 22, tzinfo=UTC))
    at = datetime(2026, 3, 9, 13, 30, tzinfo=UTC)

    with time_machine.travel(at):
        before = client.get("/api/v1/admin/intelligence/health", headers=ADMIN).json["checks"]["deadline"]
        celery_app.send_task(
            "intelligence.weekly", kwargs={"user_ids": [honolulu], "week_of": "2026-02-23"}
        ).get(timeout=60)
        tick(celery_app, db)
        healthy = client.get("/api/v1/admin/intelligence/health", headers=ADMIN).json
        db.execute(text("DELETE FROM weekly_briefs WHERE user_id = 'Asia/Kathmandu'"))
        db.commit()
        late = client.get("/api/v1/admin/intelligence/health", headers=ADMIN).json
        metrics = client.get("/metrics", headers=ADMIN).get_data(as_text=True)

    assert (before["healthy"], before["due_users"], before["briefed_users"]) == (False, 5, 0)
    check = healthy["checks"]["deadline"]
    assert (check["healthy"], check["due_users"], check["on_time_share"]) == (True, 5, 1.0)
    check = late["checks"]["deadline"]
    assert (check["healthy"], check["due_users"], check["briefed_users"]) == (False, 5, 4)
    assert check["on_time_share"] == 0.8 and check["missing_users"] == ["Asia/Kathmandu"]
    assert late["healthy"] is False
    assert "focus_weekly_brief_deadline_ratio 0.8" in metrics
    assert "focus_weekly_brief_overdue_users 1.0" in metrics
