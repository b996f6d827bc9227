"""PostgreSQL connections that die under load answer 503 JSON, never gunicorn's HTML 500.

Real gunicorn (the Procfile's 2 workers x 4 threads) on the module's PostgreSQL and Redis; client
threads run a mix of endpoints (ORM reads and a committed write on the request session, the
autocommit `statements` pool of session start/end, a liveness probe that touches no database).
Meanwhile the test terminates the web tier's backends with pg_terminate_backend (idle in
transaction ones most often: the window between a request's last query and its teardown, where the
session's removal used to raise past Flask into gunicorn), or restarts PostgreSQL with
`pg_ctl stop -m fast` + start. Every answer is checked as an operator would: its status, that its
body is JSON (a 5xx being a 503 `{code, status, message}`), that the app logged an access line with
the status the client saw, and how many seconds after the fault requests succeed again.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from focus_app.api.auth import issue_token
from focus_app.db import sqlalchemy_url
from focus_app.devservers import free_port
from tests.conftest import TEST_SECRET
from tests.faults.harness import Gunicorn, environment, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

APP_NAME = "focus-web-under-test"  # application_name of the web tier's connections: the ones killed
CLIENTS = 6
KILL_SECONDS = 10
RESTARTS = 3
SETTLE_SECONDS = 3  # load after each fault, to see requests succeed again
RECOVERY_LIMIT_SECONDS = 3
EXPECTED = {200, 201, 204, 409, 503}  # 409: a session start while one is active, or ended twice

TERMINATE = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = :app AND (:any OR state = 'idle in transaction')
"""


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    method: str
    path: str
    status: int
    content_type: str
    body: bytes
    request_id: str


class Load:
    """CLIENTS threads, each a user going through the mix until stopped; every answer is kept."""

    def __init__(self, base_url: str):
        self.address = urlsplit(base_url)
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _request(self, method: str, path: str, token: str, body: dict | None = None) -> Answer:
        request_id = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self.address.hostname, self.address.port, timeout=30)
        try:
            connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        answer = Answer(
            time.monotonic(),
            method,
            path,
            response.status,
            response.getheader("Content-Type", ""),
            data,
            request_id,
        )
        self.answers.append(answer)
        return answer

    def _client(self, n: int) -> None:
        token = issue_token(TEST_SECRET, f"dead-connections-{n}")
        sessions = "/api/v1/focus-sessions"
        while not self._stop.is_set():
            self._request("GET", "/api/v1/health", token)
            self._request("GET", f"{sessions}/active", token)
            started = self._request("POST", f"{sessions}/start", token, {"expected_duration": 25})
            self._request("GET", f"{sessions}/history", token)
            self._request("POST", "/api/v1/tasks", token, {"title": f"revise chapter {n}"})
            session_id = json.loads(started.body).get("id") if started.status == 201 else None
            if session_id is None:
                active = self._request("GET", f"{sessions}/active", token)
                if active.status == 200:
                    session_id = (json.loads(active.body)["session"] or {}).get("id")
            if session_id:
                self._request("POST", f"{sessions}/{session_id}/end", token, {"was_completed": True})


@pytest.fixture(scope="module")
def web(stack) -> Iterator[Gunicorn]:
    url = make_url(stack.postgres.url).update_query_dict({"application_name": APP_NAME})
    env = environment(url.render_as_string(hide_password=False), stack.redis.url)
    server = Gunicorn(env, stack.logs / "gunicorn.log", free_port())
    try:
        wait_for(lambda: _answers(server.url + "/api/v1/health"), 60, 0.2, what="gunicorn answers")
        yield server
    finally:
        server.stop()


def _answers(url: str) -> bool:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
    try:
        connection.request("GET", address.path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _problems(answers: list[Answer], log_text: str) -> dict[str, list[str]]:
    """What an operator would call wrong, per kind (empty lists when all is well)."""
    logged = {}
    for line in log_text.splitlines():
        if line.startswith("{") and '"focus_app.access"' in line:
            entry = json.loads(line)
            logged[entry.get("request_id")] = entry.get("status")
    kinds = ("unexpected status", "not JSON", "bad 5xx", "no access line")
    problems: dict[str, list[str]] = {kind: [] for kind in kinds}
    for answer in answers:
        seen = f"{answer.method} {answer.path} {answer.status} {answer.body[:120]!r}"
        if answer.status not in EXPECTED:
            problems["unexpected status"].append(seen)
        if answer.status != 204:
            try:
                body = json.loads(answer.body)
            except ValueError:
                problems["not JSON"].append(seen)
                continue
            if "application/json" not in answer.content_type or not isinstance(body, dict):
                problems["not JSON"].append(seen)
            elif answer.status >= 500 and not (
                answer.status == 503 and body.get("code") == 503 and {"status", "message"} <= body.keys()
            ):
                problems["bad 5xx"].append(seen)
        if logged.get(answer.request_id) != answer.status:
            problems["no access line"].append(f"{seen} logged as {logged.get(answer.request_id)}")
    return {kind: found for kind, found in problems.items() if found}


def _fail_on(problems: dict[str, list[str]], log_text: str) -> None:
    """Fails naming each kind of wrong answer and the app's error lines, in full."""
    if problems:
        found = {kind: (len(seen), seen[:5]) for kind, seen in problems.items()}
        pytest.fail(f"{found}\n" + "\n".join(_error_lines(log_text)), pytrace=False)


def _error_lines(log_text: str) -> list[str]:
    """The app's unhandled-error lines (with their tracebacks), to name the cause of a 500."""
    return [line[:4000] for line in log_text.splitlines() if '"message": "unhandled error"' in line][:5]


def _recovery_seconds(answers: list[Answer], fault_ended: float, until: float) -> float:
    """Seconds from the end of a fault to the last failed answer before `until` (0: none failed)."""
    failed = [a.at for a in answers if fault_ended <= a.at < until and a.status >= 500]
    return max(failed, default=fault_ended) - fault_ended


def _succeeded_after(answers: list[Answer], since: float) -> int:
    return sum(1 for a in answers if a.at >= since and a.status < 300 and a.path != "/api/v1/health")


def test_terminated_backends_answer_503_json_and_the_pool_recovers(faults, web):
    killer = create_engine(sqlalchemy_url(faults.postgres.url), isolation_level="AUTOCOMMIT")
    killed = Counter[str]()
    with Load(web.url) as load, killer.connect() as connection:
        time.sleep(1)
        started = time.monotonic()
        rounds = 0
        while time.monotonic() - started < KILL_SECONDS:
            every = rounds % 25 == 24  # now and then any backend, mid-query or idle in the pool
            count = connection.execute(text(TERMINATE), {"app": APP_NAME, "any": every}).scalar_one()
            killed["any state" if every else "idle in transaction"] += count
            rounds += 1
            time.sleep(0.002)
        fault_ended = time.monotonic()
        time.sleep(SETTLE_SECONDS)
    killer.dispose()

    answers = load.answers
    statuses = Counter(a.status for a in answers)
    recovery = _recovery_seconds(answers, fault_ended, fault_ended + SETTLE_SECONDS)
    during = sum(1 for a in answers if started <= a.at < fault_ended)
    print(
        f"FAULTS backends terminated for {KILL_SECONDS} s: {dict(killed)} killed; {len(answers)} requests "
        f"({during} during), statuses {dict(sorted(statuses.items()))}; recovered in {recovery:.1f} s"
    )
    _fail_on(_problems(answers, web.output()), web.output())
    assert killed["idle in transaction"] >= 5, killed  # the fault really hit the teardown window
    assert statuses[503] > 0, statuses
    assert recovery < RECOVERY_LIMIT_SECONDS
    assert _succeeded_after(answers, fault_ended + recovery) >= 10


def test_postgres_restarts_under_load_answer_503_json_and_recover(faults, web):
    recoveries = []
    with Load(web.url) as load:
        time.sleep(1)
        for _ in range(RESTARTS):
            faults.postgres.stop()
            time.sleep(0.5)
            faults.postgres.start()
            fault_ended = time.monotonic()
            time.sleep(SETTLE_SECONDS)
            recoveries.append(_recovery_seconds(load.answers, fault_ended, time.monotonic()))
            assert _succeeded_after(load.answers, fault_ended + recoveries[-1]) >= 10

    answers = load.answers
    statuses = Counter(a.status for a in answers)
    print(
        f"FAULTS PostgreSQL restarted {RESTARTS} times under load: {len(answers)} requests, statuses "
        f"{dict(sorted(statuses.items()))}; recovered in {', '.join(f'{r:.1f}' for r in recoveries)} s"
    )
    _fail_on(_problems(answers, web.output()), web.output())
    assert statuses[503] > 0, statuses
    assert max(recoveries) < RECOVERY_LIMIT_SECONDS
