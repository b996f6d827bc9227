"""Weekly briefs: one beat tick with every user due, through the real broker and worker, vs a
per-user loop.

    .venv/bin/python -m bench.intelligence                  # 2,000 users x 8 sessions
    .venv/bin/python -m bench.intelligence --users 10000    # the issue's target

Starts throwaway embedded PostgreSQL and Redis and seeds the rows straight into PostgreSQL: users
in four timezones (Los Angeles, Kathmandu, Chatham, Kiritimati), each with the brief of the week
before their latest due week done, so every one of them is due at the next tick. Then it sends
the tick beat sends (`intelligence.weekly`, trigger beat) to a real `celery worker -Q intelligence
-c 2` subprocess and times it until the run's last batch is counted (due users found with the
index, planned, generated, verified), then an idle tick, then the naive per-user baseline (a few
queries and a commit per user) on a sample in the same run, and prints users/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from focus_app import create_app
from focus_app.devservers import free_port, start_postgres, start_redis
from focus_app.migrate import upgrade
from focus_app.models import JobRun
from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.intelligence import briefs, weeks
from tests.conftest import ROOT, TEST_ADMIN_KEY, TEST_SECRET, make_settings

ZONES = ["America/Los_Angeles", "Asia/Kathmandu", "Pacific/Chatham", "Pacific/Kiritimati"]


def due_weeks(now: datetime) -> list[date]:
    """Each zone's latest due week at `now`: the week every user of that zone is owed."""
    return [weeks.due_week(now, weeks.zone_of(zone)) for zone in ZONES]


def seed(engine, users: int, sessions: int, now: datetime) -> None:
    """Users in four timezones, due at the next tick; sessions over their week and the three before."""
    owed = due_weeks(now)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, timezone, created_at, brief_week) "
                "SELECT 'bench-' || lpad(n::text, 6, '0'), (CAST(:zones AS text[]))[1 + n % 4], "
                "now() - interval '90 days', (CAST(:weeks AS date[]))[1 + n % 4] - 7 "
                "FROM generate_series(1, :users) n"
            ),
            {"users": users, "zones": ZONES, "weeks": owed},
        )
        connection.execute(
            text(
                """
INSERT INTO focus_sessions (user_id, start_time, end_time, duration_minutes, expected_duration,
                            was_completed, focus_score, interruption_count)
SELECT 'bench-' || lpad(u::text, 6, '0'), t, t + interval '30 minutes', 20 + (u + s) % 40, 25,
       (u + s) % 3 <> 0, 1 + (u * s) % 5, (u + s) % 4
FROM generate_series(1, :users) u, generate_series(1, :sessions) s,
     LATERAL (SELECT CAST((CAST(:weeks AS date[]))[1 + u % 4] - 21 AS timestamptz)
                     + ((u * 7 + s * 13) % 672) * interval '1 hour' AS t) x
"""
            ),
            {"users": users, "sessions": sessions, "weeks": owed},
        )
        connection.execute(text("ANALYZE"))


def start_worker(settings) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "JWT_SECRET": TEST_SECRET,
        "ADMIN_API_KEY": TEST_ADMIN_KEY,
        "LOG_LEVEL": "WARNING",
        "INTELLIGENCE_BATCH_SIZE": str(settings.intelligence_batch_size),
    }
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "intelligence"]
    return subprocess.Popen(
        [*command, "-c", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        cwd=ROOT,
        env=env,
    )


def tick(celery, engine) -> tuple[float, dict]:
    """Beat's tick, timed until its run has finished (or until it answers, when nothing is due)."""
    started = time.perf_counter()
    result = celery.send_task("intelligence.weekly", kwargs={"trigger": "beat"}).get(timeout=1800)
    while result.get("run_id"):
        with engine.connect() as connection:
            finished = connection.scalar(select(JobRun.finished_at).where(JobRun.id == result["run_id"]))
        if finished is not None:
            break
        time.sleep(0.02)
    return time.perf_counter() - started, result


def per_user_baseline(session_factory, user_ids: list[str]) -> float:
    """The naive shape: for each user, read their rows, work out their week, aggregate in Python,
    write, commit."""
    started = time.perf_counter()
    for user_id in user_ids:
        db = session_factory()
        zone = db.scalar(text("SELECT timezone FROM users WHERE id = :u"), {"u": user_id})
        week_of = weeks.due_week(datetime.now(UTC), weeks.zone_of(zone))
        rows = db.execute(
            text(
                "SELECT duration_minutes, was_completed, focus_score, interruption_count, "
                "start_time AT TIME ZONE :z AS local FROM focus_sessions "
                "WHERE user_id = :u AND end_time IS NOT NULL"
            ),
            {"u": user_id, "z": zone},
        ).all()
        profile = db.execute(
            text("SELECT peak_focus_hours, peak_focus_days FROM user_focus_profiles WHERE user_id = :u"),
            {"u": user_id},
        ).first()
        totals_by_week: dict[int, list[int]] = {}
        by_day: dict[int, list[int]] = {}
        by_hour: dict[int, list[int]] = {}
        for row in rows:
            monday = row.local.date() - timedelta(days=row.local.weekday())
            back = (week_of - monday).days // 7
            if not 0 <= back < briefs.TREND_WEEKS:
                continue
            totals = totals_by_week.setdefault(back, [0] * 6)
            for i, value in enumerate(
                (
                    1,
                    row.duration_minutes,
                    int(row.was_completed),
                    row.focus_score or 0,
                    int(row.focus_score is not None),
                    row.interruption_count,
                )
            ):
                totals[i] += value
            if back == 0:
                for bucket, key in ((by_day, row.local.isoweekday()), (by_hour, row.local.hour)):
                    pair = bucket.setdefault(key, [0, 0])
                    pair[0] += 1
                    pair[1] += row.duration_minutes
        numbers = briefs.WeekNumbers(
            week_of=week_of,
            weeks={k: briefs.WeekTotals(*v) for k, v in totals_by_week.items()},
            by_day={k: tuple(v) for k, v in by_day.items()},
            by_hour={k: tuple(v) for k, v in by_hour.items()},
            profile_peak_hours=profile.peak_focus_hours if profile else None,
            profile_peak_days=profile.peak_focus_days if profile else None,
        )
        values = {"user_id": user_id, "week_of": week_of, **briefs.build_brief(numbers)}
        insert = pg_insert(WeeklyBrief).values(values)
        db.execute(
            insert.on_conflict_do_update(
                constraint="uq_weekly_briefs_user_id_week_of",
                set_={
                    k: insert.excluded[k]
                    for k in ("week_stats", "main_story", "insights", "patterns", "velocity")
                },
            )
        )
        db.commit()
        db.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=8, help="per user, over four weeks")
    parser.add_argument("--baseline-users", type=int, default=300, help="sample for the per-user loop")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-intelligence-") as tmp:
        postgres = start_postgres(Path(tmp) / "pg", "bench")
        redis_server = start_redis(Path(tmp) / "redis", free_port())
        worker = None
        try:
            settings = make_settings(postgres.url, redis_server.url, intelligence_batch_size=args.batch_size)
            upgrade(settings.database_url)
            app = create_app(settings)
            celery = app.extensions["celery"]
            engine = app.extensions["db"].engine
            print(f"seeding {args.users} users x {args.sessions} sessions ...", flush=True)
            seed(engine, args.users, args.sessions, datetime.now(UTC))
            worker = start_worker(settings)
            while not celery.control.ping(timeout=1):
                time.sleep(0.5)

            elapsed, result = tick(celery, engine)
            with engine.connect() as connection:
                run = connection.execute(select(JobRun).where(JobRun.id == result["run_id"])).one()
            assert (run.status, run.succeeded) == ("success", args.users), (run.status, run.succeeded)
            idle, idle_result = tick(celery, engine)
            assert idle_result["status"] == "idle", idle_result
            sample = [f"bench-{n:06d}" for n in range(1, min(args.users, args.baseline_users) + 1)]
            with app.app_context():
                baseline = per_user_baseline(app.extensions["db"].session.session_factory, sample)
            with engine.connect() as connection:
                stored = connection.scalar(select(text("count(*)")).select_from(WeeklyBrief))

            fast, slow = args.users / elapsed, len(sample) / baseline
            print(f"one tick, worker -c 2: {args.users} users due, weeks {result['weeks']}")
            print(f"  run finished in {elapsed:.2f} s = {fast:,.0f} users/s")
            print(f"  the next tick (nobody due) answered in {idle * 1000:.0f} ms")
            print(f"per-user baseline ({len(sample)} users): {baseline:.2f} s = {slow:,.0f} users/s")
            print(f"per-user baseline extrapolated to {args.users} users: {args.users / slow:.1f} s")
            print(f"ratio: {fast / slow:.1f}x   briefs stored: {stored}   run: {result['run_id']}")
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
            redis_server.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
