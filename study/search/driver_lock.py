"""One driver per study: a second `study tune` of a study that a live driver is running is
refused before it touches anything (two drivers would each restore Tune's experiment and file
the same trials twice). The lock lives where the study's Optuna storage lives, so it covers
every machine that can reach that storage, and dies with its driver: a PostgreSQL session-level
advisory lock (released when the connection drops, a killed driver included), or an flock on a
file beside a journal or SQLite file."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from study.errors import SpecError
from study.secrets import redact


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

        engine = sqlalchemy.create_engine(
            connect_url, connect_args={"connect_timeout": 10}, poolclass=sqlalchemy.NullPool
        )
        try:
            with engine.connect() as conn:
                got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(study)}).scalar()
                conn.commit()
                if not got:
                    raise _refused(study, redact(optuna_url))
                yield  # the session, and so the lock, lasts until the connection closes
        finally:
            engine.dispose()
        return
    if "://" in connect_url:
        target = connect_url.split("///", 1)[1] if connect_url.startswith("sqlite:///") else ""
        if not target:  # another database, or an in-memory SQLite: nothing to lock on here
            yield
            return
    else:
        target = connect_url
    lock_path = Path(f"{target}.driver-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refused(study, str(lock_path)) from None
        yield
