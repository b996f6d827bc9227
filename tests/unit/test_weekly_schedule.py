"""When each user's weekly brief comes due: Monday 02:00 in their own timezone, every zone.

The property test drives the tick's own rule (`weeks.schedule`, what `intelligence.weekly` runs
for every user its index query returns) with a simulated clock over two years and every IANA zone:
beat ticks every five minutes, each a little late, with a whole day of ticks lost on the way.
"""

from __future__ import annotations

import heapq
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beat_schedule import INTELLIGENCE_TICK_MINUTES
from focus_app.services.intelligence import weeks
from tests.conftest import make_settings

ZONES = sorted(zoneinfo.available_timezones())
TICK = timedelta(minutes=INTELLIGENCE_TICK_MINUTES)
CATCH_UP_WEEKS = make_settings("postgresql://x/y", "redis://x").intelligence_catch_up_weeks
SIMULATED = timedelta(days=730)
LATEST_ALLOWED = timedelta(minutes=15)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@dataclass
class SimUser:
    """A users row as the tick sees it: zone, sign-up, brief_week and brief_due_at."""

    name: str
    zone: str
    created_at: datetime
    brief_week: date | None = None
    due_at: datetime | None = None
    briefs: list[tuple[date, datetime, str]] = field(default_factory=list)  # week, written at, zone


def run_ticks(
    users: list[SimUser], ticks: list[datetime], moves: dict[datetime, list[tuple[int, str]]]
) -> None:
    """Each tick takes the users whose brief_due_at has passed or is unset (the tick's index query,
    as a heap) and applies the tick's rule to each; a move sets a new zone and clears brief_due_at,
    as `PATCH /me` does."""
    heap = [(datetime.min.replace(tzinfo=UTC), n) for n in range(len(users))]
    heapq.heapify(heap)
    for now in ticks:
        for n, zone in moves.pop(now, []):
            users[n].zone, users[n].due_at = zone, None
            heapq.heappush(heap, (datetime.min.replace(tzinfo=UTC), n))
        while heap and heap[0][0] <= now:
            due_at, n = heapq.heappop(heap)
            user = users[n]
            if user.due_at is not None and due_at != user.due_at:
                continue  # a stale heap entry: the user was rescheduled since
            planned = weeks.schedule(
                now,
                weeks.zone_of(user.zone),
                created_at=user.created_at,
                brief_week=user.brief_week,
                enabled=True,
                catch_up_weeks=CATCH_UP_WEEKS,
            )
            user.briefs += [(week, now, user.zone) for week in planned.weeks]
            user.brief_week, user.due_at = planned.brief_week, planned.next_due_at
            heapq.heappush(heap, (planned.next_due_at, n))


def tick_times(
    start: datetime, delay: timedelta, outage_day: int
) -> tuple[list[datetime], tuple[datetime, datetime]]:
    """Beat's crontab every five minutes (aligned to the clock), each message `delay` late, and
    no tick at all for the 24 hours starting `outage_day` days in."""
    first = start.replace(
        minute=start.minute - start.minute % INTELLIGENCE_TICK_MINUTES, second=0, microsecond=0
    )
    outage = (first + timedelta(days=outage_day), first + timedelta(days=outage_day + 1))
    count = int(SIMULATED / TICK)
    slots = (first + n * TICK for n in range(count))
    return [slot + delay for slot in slots if not outage[0] <= slot < outage[1]], outage


def owed_weeks(user: SimUser, end: datetime) -> list[date]:
    """Every week whose Monday 02:00 passed in the user's zone after they signed up, until `end`."""
    zone = weeks.zone_of(user.zone)
    first = weeks.due_week(user.created_at, zone) + weeks.WEEK
    last = weeks.due_week(end, zone)
    return [first + n * weeks.WEEK for n in range((last - first).days // 7 + 1)]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)).map(
        lambda moment: moment.replace(tzinfo=UTC)
    ),
    delay_seconds=st.integers(min_value=0, max_value=120),
    outage_day=st.integers(min_value=1, max_value=720),
    signup_spread=st.integers(min_value=1, max_value=20_000),
    movers=st.lists(
        st.tuples(st.integers(0, len(ZONES) - 1), st.sampled_from(ZONES), st.integers(1, 700)),
        max_size=40,
    ),
)
def test_every_zone_gets_one_brief_per_week_from_its_own_monday_two_oclock(
    start, delay_seconds, outage_day, signup_spread, movers
):
    users = [
        SimUser(zone, zone, start - timedelta(minutes=(n * 7919 + signup_spread) % (14 * 24 * 60)))
        for n, zone in enumerate(ZONES)
    ]
    ticks, (outage_start, outage_end) = tick_times(start, timedelta(seconds=delay_seconds), outage_day)
    moved = {n for n, _, _ in movers}
    moves: dict[datetime, list[tuple[int, str]]] = {}
    for n, zone, day in movers:
        moves.setdefault(ticks[min(len(ticks) - 1, day * 288)], []).append((n, zone))

    run_ticks(users, ticks, moves)

    end = ticks[-1]
    for n, user in enumerate(users):
        written = [week for week, _, _ in user.briefs]
        iso_weeks = [week.isocalendar()[:2] for week in written]
        assert len(set(iso_weeks)) == len(iso_weeks), (user.name, written)  # exactly once per ISO week
        assert written == sorted(written)
        for week, at, zone in user.briefs:
            due = weeks.due_at(week, weeks.zone_of(zone))
            assert at >= due, (user.name, week, at, zone)  # never before local Monday 02:00
        if n in moved:
            # Whatever the moves, no week between the first and the last brief is missing.
            span = (written[-1] - written[0]).days // 7 + 1 if written else 0
            assert len(written) == span, (user.name, written)
            continue
        assert written == owed_weeks(user, end), user.name  # no week lost, the lost day included
        for week, at, _ in user.briefs:
            due = weeks.due_at(week, weeks.zone_of(user.zone))
            if due < ticks[0]:
                assert at == ticks[0]  # came due before the simulation: the first tick writes it
            elif outage_start <= due < outage_end:
                assert at < outage_end + TICK  # caught up by the first tick after the lost day
            else:
                assert at - due <= LATEST_ALLOWED, (user.name, week, at, due)


def test_a_tick_that_finds_its_user_late_writes_every_week_missed_within_the_catch_up_window():
    zone = weeks.zone_of("Europe/Berlin")
    created = utc(2025, 6, 1)
    # Beat was down for ten days: the weeks of Jan 5 and Jan 12 both came due meanwhile.
    planned = weeks.schedule(
        utc(2026, 1, 22, 12),
        zone,
        created_at=created,
        brief_week=date(2025, 12, 29),
        enabled=True,
        catch_up_weeks=4,
    )
    assert planned.weeks == (date(2026, 1, 5), date(2026, 1, 12))
    assert planned.brief_week == date(2026, 1, 12)
    assert planned.next_due_at == utc(2026, 1, 26, 1)  # Monday 02:00 CET
    # Down for two months: only the last four due weeks are written.
    late = weeks.schedule(
        utc(2026, 3, 3),
        zone,
        created_at=created,
        brief_week=date(2025, 12, 29),
        enabled=True,
        catch_up_weeks=4,
    )
    assert late.weeks == (date(2026, 2, 2), date(2026, 2, 9), date(2026, 2, 16), date(2026, 2, 23))


def test_a_new_user_is_owed_the_weeks_that_came_due_after_they_signed_up():
    zone = weeks.zone_of("UTC")
    now = utc(2026, 1, 14, 9)  # Wednesday: the week of Jan 5 came due on Monday 02:00
    signed_up_before = weeks.schedule(
        now, zone, created_at=utc(2026, 1, 12, 1, 59), brief_week=None, enabled=True, catch_up_weeks=4
    )
    signed_up_after = weeks.schedule(
        now, zone, created_at=utc(2026, 1, 12, 2, 1), brief_week=None, enabled=True, catch_up_weeks=4
    )
    assert signed_up_before.weeks == (date(2026, 1, 5),)
    assert signed_up_after.weeks == () and signed_up_after.next_due_at == utc(2026, 1, 19, 2)


def test_a_disabled_user_gets_nothing_and_keeps_their_place():
    planned = weeks.schedule(
        utc(2026, 1, 14),
        weeks.zone_of("UTC"),
        created_at=utc(2025, 1, 1),
        brief_week=date(2025, 12, 29),
        enabled=False,
        catch_up_weeks=4,
    )
    assert planned.weeks == () and planned.brief_week == date(2025, 12, 29)
    assert planned.next_due_at == utc(2026, 1, 19, 2)


def test_monday_two_oclock_in_zones_with_odd_offsets_and_across_the_date_line():
    week = date(2026, 1, 5)  # due Monday 2026-01-12 at 02:00 local
    expected = {
        "Asia/Kathmandu": utc(2026, 1, 11, 20, 15),  # UTC+5:45
        "Australia/Eucla": utc(2026, 1, 11, 17, 15),  # UTC+8:45
        "Pacific/Chatham": utc(2026, 1, 11, 12, 15),  # UTC+13:45 in its summer
        "Pacific/Kiritimati": utc(2026, 1, 11, 12, 0),  # UTC+14: still Sunday in UTC
        "Pacific/Pago_Pago": utc(2026, 1, 12, 13, 0),  # UTC-11
        "America/St_Johns": utc(2026, 1, 12, 5, 30),  # UTC-3:30
    }
    for name, due in expected.items():
        zone = weeks.zone_of(name)
        assert weeks.due_at(week, zone) == due, name
        assert weeks.due_week(due, zone) == week
        assert weeks.due_week(due - timedelta(seconds=1), zone) == week - weeks.WEEK


def test_monday_two_oclock_across_dst_changes_in_both_directions():
    la = weeks.zone_of("America/Los_Angeles")
    # Clocks go forward on Sunday 2026-03-08: that week is 167 hours and due at 02:00 PDT.
    assert weeks.due_at(date(2026, 3, 2), la) == utc(2026, 3, 9, 9)
    assert weeks.due_at(date(2026, 2, 23), la) == utc(2026, 3, 2, 10)  # 02:00 PST
    # Back on Sunday 2026-11-01: 169 hours, due at 02:00 PST.
    assert weeks.due_at(date(2026, 10, 26), la) == utc(2026, 11, 2, 10)
    chatham = weeks.zone_of("Pacific/Chatham")  # +13:45 until Sunday 2026-04-05, then +12:45
    assert weeks.due_at(date(2026, 3, 30), chatham) == utc(2026, 4, 5, 13, 15)
    assert weeks.due_at(date(2026, 3, 23), chatham) == utc(2026, 3, 29, 12, 15)


def test_an_unknown_zone_is_scheduled_in_utc():
    assert weeks.zone_of("Mars/Olympus") == weeks.zone_of("UTC") == weeks.zone_of(None)
