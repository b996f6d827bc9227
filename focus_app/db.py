"""Engine and session wiring shared by the API and the workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.orm import Session, scoped_session, sessionmaker

log = logging.getLogger(__name__)

# A connection used within this many seconds is not pinged on checkout: under load the ping
# would be a round trip per request, and a connection that dies anyway fails its statement,
# which invalidates the whole pool (SQLAlchemy's "optimistic" disconnect handling).
PING_AFTER_IDLE_SECONDS = 5.0


def connection_lost(error: exc.SQLAlchemyError) -> bool:
    """The error means the database connection is gone (down, restarted, failed over, its backend
    terminated), so the client may retry: a DBAPI error SQLAlchemy judged a disconnect or that is
    operational, the pool giving up on checkout after its reconnect attempts ("This connection is
    closed"), or a use of a session whose connection was invalidated under it."""
    if isinstance(error, exc.DBAPIError):
        return isinstance(error, exc.OperationalError | exc.InterfaceError) or error.connection_invalidated
    if isinstance(error, exc.DisconnectionError):
        return True
    message = str(error)
    return isinstance(error, exc.InvalidRequestError) and (
        "connection is closed" in message or "invalid transaction" in message
    )


def sqlalchemy_url(url: str) -> str:
    """Pin the psycopg2 driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


@dataclass
class Database:
    engine: Engine
    session: scoped_session[Session]
    # Autocommit connections for the request paths that are one statement (session start/end,
    # chat posts): no BEGIN and COMMIT round trips, the statement is its own transaction.
    statements: Engine

    @classmethod
    def connect(cls, url: str) -> Database:
        engine = _engine(url, pool_size=5, max_overflow=10)
        statements = _engine(url, pool_size=4, max_overflow=4, isolation_level="AUTOCOMMIT")
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        return cls(engine=engine, session=scoped_session(factory), statements=statements)

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        with self.statements.connect() as connection:
            yield connection

    def end_session(self) -> None:
        """Close the scoped session after a request or task; never raises.

        Its open transaction is only ever rolled back here (what is kept was committed by the
        code that wrote it), so a connection that died after the last query loses nothing: the
        failed rollback invalidates it, the pool opens a new one, and the answer stands. Raised
        from Flask's teardown, the error reached gunicorn, which answered its own HTML 500.
        """
        try:
            self.session.remove()
        except exc.SQLAlchemyError as error:
            log.warning("database connection lost at the end of a request: %s", error)
            try:
                self.session.registry().invalidate()
            finally:
                self.session.registry.clear()

    def after_fork(self) -> None:
        """A forked worker must not reuse its parent's sockets (SQLAlchemy's pooling docs)."""
        self.engine.dispose(close=False)
        self.statements.dispose(close=False)


def _engine(url: str, **options: Any) -> Engine:
    engine = create_engine(sqlalchemy_url(url), connect_args={"connect_timeout": 5}, **options)

    @event.listens_for(engine, "checkin")
    def note_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """pool_pre_ping, only for connections that sat idle (SQLAlchemy's checkout-event recipe)."""
        if time.monotonic() - record.info.get("checked_in_at", 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(str(error)) from error
        if not alive:
            raise exc.DisconnectionError("connection failed its ping")

    @event.listens_for(engine, "handle_error")
    def closed_is_a_disconnect(context: Any) -> None:
        """An error that left psycopg2's connection closed is a lost connection, whatever its
        message: a backend killed at the wrong moment can surface as a bare DatabaseError ("error
        with status PGRES_TUPLES_OK and no message from the libpq") that SQLAlchemy's message list
        does not know, which was a 500 instead of a 503 (SQLAlchemy's handle_error recipe)."""
        if context.is_disconnect or context.connection is None:
            return
        try:
            closed = bool(context.connection.connection.dbapi_connection.closed)
        except (AttributeError, exc.SQLAlchemyError):
            return
        if closed:
            context.is_disconnect = True

    return engine
