"""Focus-profile throughput: the Celery pipeline against a naive per-user loop, same run.

    python -m bench.profiles [--users 20000] [--sessions 30] [--concurrency 2] [--naive-users 1000]

Seeds users x sessions straight into PostgreSQL, flags every user in Redis, publishes
focus.update_profiles through the broker to a real `celery worker` process and times until the
run's last batch is counted. The baseline computes the same profiles one user at a time (one
query per user, metrics in Python, one upsert per user: the seed's FocusSessionService shape) on
a sample, and checks that both agree.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import redis
from celery import Celery
from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql import insert

from bench.common import environment, servers, wait_until, worker_process
from focus_app.db import sqlalchemy_url
from focus_app.models import UserFocusProfile
from focus_app.services.jobkit.keys import update_flag

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]

SEED_SQL = """
INSERT INTO users (id, timezone, sessions_version)
SELECT 'bench-' || u, (ARRAY['UTC','Europe/Berlin','America/New_York','Asia/Tokyo'])[1 + u % 4], :m
FROM generate_series(1, :n) u;
INSERT INTO tasks (user_id, title, course)
SELECT 'bench-' || u, 'task', 'COURSE-' || (u % 7) FROM generate_series(1, :n) u;
INSERT INTO focus_sessions (user_id, task_id, start_time, end_time, duration_minutes,
    expected_duration, break_minutes, was_completed, focus_score, interruption_count)
SELECT 'bench-' || u,
       CASE WHEN s % 3 = 0 THEN t.id END,
       timestamptz '2026-01-01 06:00+00' + (s * 26 + u % 17) * interval '1 hour',
       timestamptz '2026-01-01 06:00+00' + (s * 26 + u % 17) * interval '1 hour'
           + (15 + (u * s) % 50) * interval '1 minute',
       15 + (u * s) % 50, 25 + (s % 3) * 5, (u + s) % 4, (u + s) % 5 <> 0, 1 + (u + s) % 5,
       (u * 7 + s) % 4
FROM generate_series(1, :n) u
JOIN tasks t ON t.user_id = 'bench-' || u
CROSS JOIN generate_series(1, :m) s;
ANALYZE;
"""


def seed(engine, users: int, sessions: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE users, tasks, focus_sessions, user_focus_profiles, job_runs, job_run_units CASCADE"
            )
        )
        for statement in SEED_SQL.split(";"):
            if statement.strip():
                connection.execute(text(statement), {"n": users, "m": sessions})


def flag_everyone(client: redis.Redis, users: int, sessions: int) -> None:
    with client.pipeline(transaction=False) as pipe:
        for u in range(1, users + 1):
            pipe.set(update_flag(f"bench-{u}"), sessions, ex=86400)
        pipe.execute()


def run_pipeline(env, engine, concurrency: int, users: int) -> float:
    app = Celery(broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    with worker_process(env, "profiles", concurrency):
        # Warm-up: the worker is ready when a trivial run completes.
        wait_until(
            lambda: app.send_task(
                "focus.update_profiles", kwargs={"user_ids": ["none"]}, queue="profiles"
            ).get(timeout=60),
            timeout=120,
        )
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM job_runs"))
        started = time.perf_counter()
        summary = app.send_task("focus.update_profiles", queue="profiles").get(timeout=300)

        def finished():
            with engine.connect() as connection:
                return connection.execute(
                    text("SELECT finished_at IS NOT NULL, succeeded FROM job_runs WHERE id = :id"),
                    {"id": summary["run_id"]},
                ).one()[0]

        wait_until(finished, timeout=900, interval=0.01)
        elapsed = time.perf_counter() - started
    with engine.connect() as connection:
        done = connection.execute(text("SELECT count(*) FROM user_focus_profiles")).scalar_one()
    assert done == users, f"expected {users} profiles, found {done}"
    return elapsed


def naive_profile(connection, user_id: str) -> dict:
    """One user: fetch their sessions, compute in Python, upsert (the per-user loop)."""
    zone = ZoneInfo(
        connection.execute(text("SELECT timezone FROM users WHERE id = :u"), {"u": user_id}).scalar_one()
    )
    rows = connection.execute(
        text(
            "SELECT s.duration_minutes, s.expected_duration, s.break_minutes, s.interruption_count, "
            "s.was_completed, s.focus_score, s.start_time, t.course FROM focus_sessions s "
            "LEFT JOIN tasks t ON t.id = s.task_id WHERE s.user_id = :u AND s.end_time IS NOT NULL"
        ),
        {"u": user_id},
    ).all()
    if len(rows) < 3:
        return {}
    hours, days, minutes_by_hour, minutes_by_day = Counter(), Counter(), Counter(), Counter()
    for row in rows:
        local = row.start_time.astimezone(zone)
        hours[local.hour] += 1
        minutes_by_hour[local.hour] += row.duration_minutes
        days[local.isoweekday()] += 1
        minutes_by_day[local.isoweekday()] += row.duration_minutes
    estimates = [
        (r.expected_duration - r.duration_minutes) * 100 / r.expected_duration
        for r in rows
        if r.expected_duration
    ]
    profile = {
        "user_id": user_id,
        "avg_focus_duration_minutes": round(statistics.mean(r.duration_minutes for r in rows)),
        "avg_break_duration_minutes": round(statistics.mean(r.break_minutes for r in rows)),
        "avg_interruption_count": round(statistics.mean(r.interruption_count for r in rows), 2),
        "avg_completion_ratio": round(sum(r.was_completed for r in rows) / len(rows), 2),
        "avg_underestimation_pct": round(statistics.mean(estimates), 2) if estimates else None,
        "peak_focus_hours": sorted(hours, key=lambda h: (-hours[h], -minutes_by_hour[h], h))[:3],
        "peak_focus_days": [
            DAYS[d - 1] for d in sorted(days, key=lambda d: (-days[d], -minutes_by_day[d], d))[:3]
        ],
        "focus_by_hour": {str(h): n for h, n in hours.items()},
        "total_sessions_count": len(rows),
        "completed_sessions_count": sum(r.was_completed for r in rows),
        "sessions_analyzed_count": len(rows),
        "last_computed_at": datetime.now(ZoneInfo("UTC")),
    }
    statement = insert(UserFocusProfile).values(**profile)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id"],
            set_={k: statement.excluded[k] for k in profile if k != "user_id"},
        )
    )
    connection.commit()
    return profile


def run_naive(engine, sample: int) -> tuple[float, list[dict]]:
    with engine.connect() as connection:
        started = time.perf_counter()
        profiles = [naive_profile(connection, f"bench-{u}") for u in range(1, sample + 1)]
        return time.perf_counter() - started, profiles


def check_agreement(engine, naive: list[dict]) -> int:
    """The two implementations must agree on every compared field, or the ratio means nothing."""
    fields = (
        "avg_focus_duration_minutes",
        "avg_break_duration_minutes",
        "peak_focus_hours",
        "peak_focus_days",
        "focus_by_hour",
        "completed_sessions_count",
    )
    with engine.connect() as connection:
        for profile in naive:
            row = connection.execute(
                text(f"SELECT {', '.join(fields)} FROM user_focus_profiles WHERE user_id = :u"),
                {"u": profile["user_id"]},
            ).one()
            for field, value in zip(fields, row, strict=True):
                assert value == profile[field], (profile["user_id"], field, value, profile[field])
    return len(naive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--naive-users", type=int, default=1_000)
    args = parser.parse_args()

    with servers() as (database_url, redis_url):
        env = environment(database_url, redis_url, PROFILE_BATCH_SIZE="500")
        engine = create_engine(sqlalchemy_url(database_url))
        started = time.perf_counter()
        seed(engine, args.users, args.sessions)
        flag_everyone(redis.Redis.from_url(redis_url), args.users, args.sessions)
        print(f"seeded {args.users} users x {args.sessions} sessions in {time.perf_counter() - started:.1f}s")

        pipeline_seconds = run_pipeline(env, engine, args.concurrency, args.users)
        naive_seconds, naive = run_naive(engine, args.naive_users)
        compared = check_agreement(engine, naive)
        engine.dispose()

    pipeline_rate = args.users / pipeline_seconds
    naive_rate = args.naive_users / naive_seconds
    print(
        f"celery pipeline : {args.users} profiles in {pipeline_seconds:.2f}s = "
        f"{pipeline_rate:,.0f} profiles/s (end to end, {args.concurrency} worker processes)"
    )
    print(
        f"naive per-user  : {args.naive_users} profiles in {naive_seconds:.2f}s = "
        f"{naive_rate:,.0f} profiles/s"
    )
    print(
        f"ratio           : {pipeline_rate / naive_rate:.1f}x   "
        f"({compared} profiles compared field by field: identical)"
    )


if __name__ == "__main__":
    main()
