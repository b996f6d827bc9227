"""User ids that read like key parts (`keys`, `latest`, `stats`, `:`, `*`) are ordinary users: their
Redis keys never touch anyone else's, and deleting them leaves every other cache intact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from focus_app.models import UserFocusProfile
from focus_app.services.jobkit import keys
from tests.integration.conftest import wait_for
from tests.integration.factories import make_session, make_user

pytestmark = pytest.mark.usefixtures("worker")

DAY = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday
WEEK = "2026-01-05"
ODD_USERS = ["keys", "latest", "stats", "a:b", "x*y", "brief:alice", "50%", "[z]"]
EVERYONE = ["alice", *ODD_USERS]


def cached_keys(redis_conn) -> set[bytes]:
    return {key for pattern in ("focus:*", "brief:*") for key in redis_conn.scan_iter(match=pattern)}


def test_odd_user_ids_never_touch_other_users_keys(client, auth, db, redis_conn, celery_app):
    for user in EVERYONE:
        make_user(db, user)
        for n in range(3):
            make_session(db, user, DAY + timedelta(days=n), 25 + n, score=4)
    celery_app.send_task("focus.update_profiles", kwargs={"user_ids": EVERYONE}).get(timeout=60)
    wait_for(
        lambda: (
            db.scalar(select(func.count()).select_from(UserFocusProfile)) == len(EVERYONE) or db.rollback()
        )
    )
    celery_app.send_task("intelligence.generate", kwargs={"user_ids": EVERYONE, "week_of": WEEK}).get(
        timeout=60
    )
    for user in EVERYONE:
        headers = auth(user)
        assert client.get("/api/v1/focus-sessions/profile", headers=headers).json["status"] == "ready"
        assert client.get("/api/v1/intelligence/briefs/latest", headers=headers).status_code == 200
        assert client.get(f"/api/v1/intelligence/briefs/{WEEK}", headers=headers).status_code == 200
        redis_conn.set(keys.update_flag(user), 1, ex=60)
    alices = {
        keys.profile_cache("alice"),
        keys.update_flag("alice"),
        keys.brief("alice", "latest"),
        keys.brief("alice", WEEK),
        keys.brief_tracking("alice"),
    }
    stats = keys.brief_stats(datetime.now(UTC).date())
    assert {key.encode() for key in alices} | {stats.encode()} <= cached_keys(redis_conn)
    # Each user's keys are their own: no two users share a key.
    owned = {user: {key.encode() for key in _keys_of(user)} for user in EVERYONE}
    for user in EVERYONE:
        assert owned[user] <= cached_keys(redis_conn), user
    hits_before = redis_conn.hgetall(stats)

    for user in ODD_USERS:
        assert client.delete("/api/v1/me", headers=auth(user)).status_code == 204
        left = cached_keys(redis_conn)
        assert not owned[user] & left, user
        for other in EVERYONE[EVERYONE.index(user) + 1 :] + ["alice"]:
            assert owned[other] <= left, (user, other)

    assert redis_conn.hgetall(stats) == hits_before
    assert client.get("/api/v1/intelligence/briefs/latest", headers=auth("alice")).status_code == 200
    # Alice's brief is still cached: this read is a hit.
    assert int(redis_conn.hgetall(stats)[b"hits"]) == int(hits_before.get(b"hits", 0)) + 1


def _keys_of(user: str) -> list[str]:
    return [
        keys.profile_cache(user),
        keys.update_flag(user),
        keys.brief(user, "latest"),
        keys.brief(user, WEEK),
        keys.brief_tracking(user),
    ]
