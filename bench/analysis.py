"""Analysis-job throughput against the seed's design, measured in one run.

    python -m bench.analysis [--messages 400] [--jobs 200] [--concurrency 2]

1. Chat messages per second through `POST /chat/messages` with the triggers on (every fifth
   message of a context enqueues a job; the worker runs them meanwhile).
2. Jobs per second through `analysis.run` on a real Celery worker (local analyser, 30 messages
   each), against the seed's design: one polling worker that takes one job per 10 s poll, i.e.
   1 / (10 s + the measured time of one job).
Embedded PostgreSQL and Redis are started in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, insert, select

from focus_app import create_app
from focus_app.api.auth import issue_token
from focus_app.devservers import free_port, start_postgres, start_redis
from focus_app.migrate import upgrade
from focus_app.models.analysis import AnalysisJob, ChatMessage
from focus_app.services.analysis import jobs as analysis_jobs
from focus_app.services.analysis import triggers
from focus_app.services.focus.users import ensure_user
from tests.conftest import TEST_SECRET, make_settings
from workers.publish import publish_analysis_runs

SEED_POLL_SECONDS = 10
TEXTS = [
    "Work was stressful, the deadline moved again and I am tired.",
    "I work as a designer and love the new project with the team.",
    "Slept badly, worried about the presentation tomorrow.",
    "The presentation went well, I feel proud and relieved.",
    "My manager is supportive, the team feels calm this week.",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        postgres = start_postgres(Path(tmp) / "pg", "bench_analysis")
        redis_server = start_redis(Path(tmp) / "redis", free_port())
        try:
            run(postgres.url, redis_server.url, args)
        finally:
            redis_server.stop()
            postgres.stop()


def run(database_url: str, redis_url: str, args) -> None:
    upgrade(database_url)
    app = create_app(make_settings(database_url, redis_url))
    celery = app.extensions["celery"]
    with start_worker(
        celery, pool="threads", concurrency=args.concurrency, perform_ping_check=False, loglevel="WARNING"
    ):
        chat_rate, triggered = bench_chat(app, args.messages)
        jobs_rate, job_seconds = bench_jobs(app, args.jobs)
    seed_rate = 1 / (SEED_POLL_SECONDS + job_seconds)
    print(
        f"chat: {args.messages} messages in the API with triggers on: {chat_rate:.0f} messages/s "
        f"({triggered} jobs enqueued)"
    )
    print(
        f"jobs: {args.jobs} jobs through analysis.run, worker concurrency {args.concurrency}: "
        f"{jobs_rate:.1f} jobs/s (mean job {job_seconds * 1000:.1f} ms)"
    )
    print(
        f"seed design (one poll every {SEED_POLL_SECONDS} s, one job per poll): {seed_rate:.3f} jobs/s "
        f"= {seed_rate * 60:.1f} jobs/min"
    )
    print(f"ratio jobs/s vs seed design: {jobs_rate / seed_rate:.0f}x")


def bench_chat(app, count: int) -> tuple[float, int]:
    client = app.test_client()
    users = [f"chat{n}" for n in range(max(1, count // 20))]
    headers = {u: {"Authorization": f"Bearer {issue_token(TEST_SECRET, u)}"} for u in users}
    started = time.perf_counter()
    triggered = 0
    for n in range(count):
        user = users[n % len(users)]
        response = client.post(
            "/api/v1/chat/messages",
            json={"context_type": "work", "content": TEXTS[n % len(TEXTS)]},
            headers=headers[user],
        )
        assert response.status_code == 201, response.json
        triggered += response.json["analysis"]["status"] == "enqueued"
    return count / (time.perf_counter() - started), triggered


def bench_jobs(app, count: int) -> tuple[float, float]:
    with app.app_context():
        db = app.extensions["db"].session()
        users = [f"job{n}" for n in range(count)]
        for user in users:
            ensure_user(db, user)
        db.execute(
            insert(ChatMessage),
            [
                {"user_id": u, "context_type": "work", "content": TEXTS[i % len(TEXTS)] + f" ({i})"}
                for u in users
                for i in range(30)
            ],
        )
        db.commit()
        decisions = [triggers.request_analysis(db, u, "work", "chat", analysis_jobs.Rules()) for u in users]
        started = time.perf_counter()
        publish_analysis_runs([analysis_jobs.run_message(d.job) for d in decisions])
        ids = [d.job.id for d in decisions]
        done_query = select(func.count()).where(AnalysisJob.id.in_(ids), AnalysisJob.status == "completed")
        while db.scalar(done_query) < count:
            db.rollback()
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        mean_job = db.scalar(
            select(func.avg(func.extract("epoch", AnalysisJob.completed_at - AnalysisJob.started_at))).where(
                AnalysisJob.id.in_(ids)
            )
        )
        db.close()
    return count / elapsed, float(mean_job)


if __name__ == "__main__":
    main()
