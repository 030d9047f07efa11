"""One driver per study: a second `study tune` of a study that a live driver is running is
refused before it touches anything (two drivers would each restore Tune's experiment and file
the same trials twice). The lock lives where the study's Optuna storage lives, so it covers
every machine that can reach that storage, and dies with its driver: a PostgreSQL session-level
advisory lock (released when the connection drops, a killed driver included), or an flock on a
file beside a journal or SQLite file. Other databases (MySQL...) take no lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from study.errors import SpecError
from study.secrets import redact, scrub


def _refused(study: str, where: str) -> SpecError:
    return SpecError(
        f"study {study} is being run by another driver (it holds the study's lock in {where}); wait for it to "
        f"end or stop it, then run this again to resume"
    )


def lock_key(study: str) -> int:
    """A signed 64-bit advisory-lock key for the study name."""
    return int.from_bytes(hashlib.sha256(f"study-driver:{study}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def driver_lock(study: str, optuna_url: str, connect_url: str) -> Iterator[None]:
    """Hold the study's lock while the block runs. `optuna_url`: the storage as written (shown);
    `connect_url`: the same with its ${VARS} expanded (never shown)."""
    if connect_url.startswith("postgresql"):
        import sqlalchemy

        # keepalives: a driver whose node vanished (no FIN) lets go within about a minute
        connect = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3}  # fmt: skip
        engine = sqlalchemy.create_engine(connect_url, connect_args=connect, poolclass=sqlalchemy.NullPool)
        try:
            try:
                conn = engine.connect()
                got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(study)}).scalar()
                conn.commit()
            except sqlalchemy.exc.SQLAlchemyError as e:
                first = scrub(redact((str(e).strip().splitlines() or [type(e).__name__])[0]), connect_url)
                raise SpecError(
                    f"optuna storage {redact(optuna_url)} could not take the study's lock ({first}); check the "
                    f"database and its credentials"
                ) from None
            with conn:
                if not got:
                    raise _refused(study, redact(optuna_url))
                yield  # the session, and so the lock, lasts until the connection closes
        finally:
            engine.dispose()
        return
    if "://" in connect_url:
        target = connect_url.split("///", 1)[1] if connect_url.startswith("sqlite:///") else ""
        if not target or target.startswith(":memory:"):  # another database (no lock), or in-memory SQLite
            yield
            return
    else:  # a journal file: its folder is made when Optuna opens it, so make it now
        target = connect_url
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{target}.{study}.driver-lock")  # one per study: studies may share a storage
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refused(study, str(lock_path)) from None
        yield
