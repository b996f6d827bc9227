"""Engine and session wiring shared by the API and the workers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker


def sqlalchemy_url(url: str) -> str:
    """Pin the psycopg2 driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


@dataclass
class Database:
    engine: Engine
    session: scoped_session[Session]

    @classmethod
    def connect(cls, url: str) -> Database:
        engine = create_engine(
            sqlalchemy_url(url),
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": 5},
        )
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        return cls(engine=engine, session=scoped_session(factory))

    def after_fork(self) -> None:
        """A forked worker must not reuse its parent's sockets (SQLAlchemy's pooling docs)."""
        self.engine.dispose(close=False)
