"""Bulk replay of dead letters against replaying them one by one, measured in one run.

    python -m bench.replay [--jobs 10000] [--baseline-jobs 500]

Seeds failed analysis jobs straight into PostgreSQL, then through the API (in process, no worker:
the messages stay in Redis):
1. `POST /admin/analysis-jobs/replay` with `dry_run` (the count and a sample);
2. the same with `dry_run: false`: every job back to pending and published, in pages;
3. the baseline, what an operator had before: `POST /admin/analysis-jobs/{id}/replay` per job, on
   a sample of other dead letters.
Embedded PostgreSQL and Redis (or BENCH_DATABASE_URL / BENCH_REDIS_URL, wiped).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, text

from bench.common import ADMIN_KEY, SECRET, servers
from focus_app import create_app
from focus_app.config import Settings
from focus_app.models.analysis import AnalysisJob

ADMIN = {"X-API-Key": ADMIN_KEY}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--baseline-jobs", type=int, default=500)
    args = parser.parse_args()
    with servers() as (database_url, redis_url):
        settings = Settings(
            environment="test",
            database_url=database_url,
            redis_url=redis_url,
            jwt_secret=SECRET,
            admin_api_key=ADMIN_KEY,
            log_level="WARNING",
        )
        run(create_app(settings), args.jobs, args.baseline_jobs)


def seed(app, user_id: str, count: int, error: str) -> None:
    with app.app_context():
        db = app.extensions["db"].session()
        db.execute(text("INSERT INTO users (id) VALUES (:u) ON CONFLICT DO NOTHING"), {"u": user_id})
        failed_at = datetime.now(UTC) - timedelta(minutes=5)
        rows = [
            {
                "user_id": user_id,
                "context_type": f"c{n}",
                "priority": "low",
                "source": "chat",
                "status": "failed",
                "attempts": 4,
                "error": error,
                "completed_at": failed_at,
            }
            for n in range(count)
        ]
        for start in range(0, count, 5000):
            db.execute(insert(AnalysisJob), rows[start : start + 5000])
        db.commit()
        db.close()


def run(app, jobs: int, baseline_jobs: int) -> None:
    client = app.test_client()
    seed(app, "bulk", jobs, "TimeoutError: provider timed out")
    seed(app, "one-by-one", baseline_jobs, "MalformedOutput: not JSON")

    started = time.perf_counter()
    dry = client.post("/api/v1/admin/analysis-jobs/replay", json={"error": "timed out"}, headers=ADMIN)
    dry_seconds = time.perf_counter() - started
    assert dry.status_code == 200 and dry.json["matched"] == jobs, dry.json

    started = time.perf_counter()
    bulk = client.post(
        "/api/v1/admin/analysis-jobs/replay", json={"error": "timed out", "dry_run": False}, headers=ADMIN
    )
    bulk_seconds = time.perf_counter() - started
    assert bulk.status_code == 200 and bulk.json["replayed"] == jobs, bulk.json

    with app.app_context():
        db = app.extensions["db"].session()
        ids = db.scalars(select(AnalysisJob.id).where(AnalysisJob.user_id == "one-by-one")).all()
        db.close()
    started = time.perf_counter()
    for job_id in ids:
        response = client.post(f"/api/v1/admin/analysis-jobs/{job_id}/replay", headers=ADMIN)
        assert response.status_code == 202, response.json
    one_seconds = time.perf_counter() - started

    with app.app_context():
        db = app.extensions["db"].session()
        left = db.scalar(select(func.count()).where(AnalysisJob.status == "failed"))
        db.close()
    bulk_rate, one_rate = jobs / bulk_seconds, baseline_jobs / one_seconds
    print(f"dry run: {jobs} dead letters counted and sampled in {dry_seconds * 1000:.0f} ms")
    print(
        f"bulk replay: {jobs} jobs in {bulk.json['pages']} pages, {bulk_seconds:.2f} s, "
        f"{bulk_rate:.0f} jobs/s ({bulk.json['published']} published)"
    )
    print(f"one by one (POST /{{id}}/replay, {baseline_jobs} jobs): {one_rate:.0f} jobs/s")
    print(f"ratio: {bulk_rate / one_rate:.1f}x; failed jobs left: {left}")


if __name__ == "__main__":
    main()
