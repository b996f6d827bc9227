"""Session export: the streamed CSV (server-side cursor, batches of 1,000 rows) against the naive
export (load every session as an ORM object, build the whole CSV in memory, then answer).

Both go through the Flask app's `GET /api/v1/me/export?format=csv` on real PostgreSQL and produce
the same bytes; measured: wall time, rows/s, peak Python memory (tracemalloc) and time to the first
byte. Run: `.venv/bin/python -m bench.export [--sessions 100000]`.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
import tracemalloc

from sqlalchemy import select, text

from bench.common import ADMIN_KEY, SECRET, servers
from focus_app import create_app
from focus_app.api.auth import issue_token
from focus_app.config import Settings
from focus_app.models import FocusSession, Task
from focus_app.services.account import export as exports


def naive_export(db, user_id: str) -> str:
    """The obvious version: every row in memory, then the whole document."""
    rows = db.execute(
        select(FocusSession, Task.title, Task.course)
        .outerjoin(Task, Task.id == FocusSession.task_id)
        .where(FocusSession.user_id == user_id)
        .order_by(FocusSession.start_time, FocusSession.id)
    ).all()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(exports.CSV_COLUMNS)
    for session, title, course in rows:
        values = {**{c.key: getattr(session, c.key) for c in FocusSession.__table__.columns}}
        values.update(task_title=title, task_course=course)
        writer.writerow([exports._csv_cell(values[column]) for column in exports.CSV_COLUMNS])
    return buffer.getvalue()


def measure(label, produce):
    tracemalloc.start()
    started = time.perf_counter()
    first = None
    size = 0
    for chunk in produce():
        if first is None:
            first = time.perf_counter() - started
        size += len(chunk)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"label": label, "seconds": elapsed, "first_byte": first, "peak": peak, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100_000)
    count = parser.parse_args().sessions
    with servers() as (database_url, redis_url):
        app = create_app(
            Settings(
                database_url=database_url,
                redis_url=redis_url,
                jwt_secret=SECRET,
                admin_api_key=ADMIN_KEY,
                log_level="WARNING",
            )
        )
        db = app.extensions["db"].session()
        db.execute(text("INSERT INTO users (id) VALUES ('bench')"))
        db.execute(
            text(
                """
                INSERT INTO focus_sessions (user_id, start_time, end_time, duration_minutes,
                                            expected_duration, was_completed, focus_score, context)
                SELECT 'bench', t, t + interval '25 minutes', 25, 25, n % 3 <> 0, 1 + n % 5, 'session ' || n
                FROM generate_series(1, :count) AS n,
                     LATERAL (SELECT timestamptz '2025-01-01' + n * interval '10 minutes') AS s(t)
                """
            ),
            {"count": count},
        )
        db.commit()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {issue_token(SECRET, 'bench')}"}

        def streamed():
            response = client.get("/api/v1/me/export?format=csv", headers=headers, buffered=False)
            try:
                yield from response.response
            finally:
                response.close()

        def naive():
            with app.app_context():
                session = app.extensions["db"].session()
                yield naive_export(session, "bench").encode()
                app.extensions["db"].session.remove()

        ours = measure("streamed", streamed)
        base = measure("naive", naive)
        assert ours["bytes"] == base["bytes"], (ours["bytes"], base["bytes"])
        print(f"{count:,} sessions, {ours['bytes'] / 1e6:.1f} MB of CSV")
        for run in (ours, base):
            print(
                f"{run['label']:>9}: {run['seconds']:.2f} s, {count / run['seconds']:,.0f} rows/s, "
                f"first byte after {run['first_byte'] * 1000:.0f} ms, "
                f"peak Python memory {run['peak'] / 1e6:.1f} MB"
            )
        print(
            f"ratios streamed vs naive: memory {base['peak'] / ours['peak']:.1f}x lower, "
            f"first byte {base['first_byte'] / ours['first_byte']:.0f}x sooner, "
            f"throughput {base['seconds'] / ours['seconds']:.2f}x"
        )


if __name__ == "__main__":
    main()
