"""Run one unit of work in one transaction, re-running it whole on transient database errors.

A Galera cluster behind a MaxScale proxy answers a busy or failing-over node with deadlock
(1213), lock wait timeout (1205), server gone away (2006) or lost connection (2013; MariaDB
says 1927 when the connection is killed). Each rolls the transaction back, so the unit is
re-executed from the start on a fresh connection after an exponential backoff. After the last
attempt `RetriesExhaustedError` says which unit failed; the failed transaction left nothing
behind.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")

DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205
SERVER_GONE_AWAY = 2006
LOST_CONNECTION = 2013
CONNECTION_KILLED = 1927
RETRYABLE_MYSQL_ERRORS = frozenset(
    {DEADLOCK, LOCK_WAIT_TIMEOUT, SERVER_GONE_AWAY, LOST_CONNECTION, CONNECTION_KILLED}
)


class RetriesExhaustedError(RuntimeError):
    """A unit of work still failed with a transient error after the last retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: delay k (1-based) is initial_delay_s * multiplier**(k-1), capped,
    with up to `jitter_fraction` random extra so parallel writers do not collide again."""

    max_attempts: int = 6
    initial_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    jitter_fraction: float = 0.25

    def delay_s(self, retry_number: int) -> float:
        base = min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (retry_number - 1))
        return base * (1.0 + self.jitter_fraction * random.random())


DEFAULT_RETRY = RetryPolicy()


def mysql_error_code(error: BaseException) -> int | None:
    """The MySQL/MariaDB error number of a pymysql error or an SQLAlchemy wrapper of one."""
    original = error.orig if isinstance(error, sa.exc.DBAPIError) else error
    arguments = getattr(original, "args", ())
    if arguments and isinstance(arguments[0], int):
        return arguments[0]
    return None


def is_retryable(error: BaseException) -> bool:
    """True for deadlock, lock wait timeout and lost/killed/invalidated connections."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    if mysql_error_code(error) in RETRYABLE_MYSQL_ERRORS:
        return True
    # SQLite (embedded mode) reports a competing writer as "database is locked"
    return isinstance(error, sa.exc.OperationalError) and "database is locked" in str(error.orig)


def run_in_transaction(
    engine: Engine,
    unit_of_work: Callable[[sa.Connection, int], T],
    description: str,
    policy: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `unit_of_work(connection, attempt)` inside one transaction and commit it.

    `attempt` is 1-based; from attempt 2 on, the work must not trust anything it learnt
    outside the database (an earlier attempt may have committed before its connection died),
    so it should look rows up by natural key. The work must not change state outside the
    database: whatever it returns is only valid once this function returns.
    """
    for attempt in range(1, policy.max_attempts + 1):
        try:
            with engine.begin() as connection:
                return unit_of_work(connection, attempt)
        except sa.exc.DBAPIError as error:
            if not is_retryable(error):
                raise
            code = mysql_error_code(error)
            if attempt == policy.max_attempts:
                raise RetriesExhaustedError(
                    f"ISPyB ingest of {description} failed after {attempt} attempts "
                    f"(last error: MySQL {code}, {type(error.orig).__name__}); its transaction "
                    "was rolled back, nothing of it was written"
                ) from error
            delay = policy.delay_s(attempt)
            log.warning(
                "ISPyB ingest of %s: transient error (MySQL %s, %s), retry %d/%d in %.1f s",
                description,
                code,
                type(error.orig).__name__,
                attempt,
                policy.max_attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
