"""The hot-path statements, built once at import: the claim and the fenced success.

The claim follows reliability §7.4.

The claim is a single statement on each dialect:

* SQLite (inside the ``BEGIN IMMEDIATE`` the write engine emits): ``UPDATE jobs ...
  WHERE id = (SELECT id ... ORDER BY priority DESC, order_key, id LIMIT 1) RETURNING``;
  the write lock makes the sub-select and the update atomic, no SKIP LOCKED needed.
* PostgreSQL: a ``MATERIALIZED`` CTE selecting the first claimable row ``FOR UPDATE SKIP
  LOCKED``, then ``UPDATE ... FROM c RETURNING``. Time is ``COALESCE(:now,
  clock_timestamp())``: the injected clock when there is one, else the server's clock.

Both require the claiming worker to be ``active`` without a stop request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Integer, String, bindparam, text, update

from dsa_stream.registry.models import groups, jobs
from dsa_stream.registry.states import GroupState, JobState
from dsa_stream.registry.types import UTCDateTime

_WORKER_ACTIVE = (
    "EXISTS (SELECT 1 FROM workers w WHERE w.id = :wid AND w.state = 'active' "
    "AND w.stop_requested IS NULL)"
)
_RETURNING = (
    "RETURNING {p}id, {p}kind, {p}group_id, {p}window_id, {p}dedupe_key, {p}order_key, "
    "{p}lease_token, {p}attempt, {p}max_attempts, {p}timeout_s, {p}payload, "
    "{p}heartbeat_at, {p}lease_expires_at"
)
SQLITE_CLAIM = (
    "UPDATE jobs\n"
    "   SET state = 'running', lease_owner = :wid, attempt = attempt + 1,\n"
    "       lease_token = lease_token + 1, lease_expires_at = :expires,\n"
    "       heartbeat_at = :now, updated_at = :now, progress = NULL\n"
    " WHERE id = (SELECT id FROM jobs\n"
    "              WHERE state = 'queued' AND available_at <= :now{kinds}\n"
    f"                AND {_WORKER_ACTIVE}\n"
    "              ORDER BY priority DESC, order_key, id\n"
    "              LIMIT 1)\n" + _RETURNING.format(p="")
)
_PG_NOW = "COALESCE(CAST(:now AS timestamptz), clock_timestamp())"
POSTGRES_CLAIM = (
    "WITH c AS MATERIALIZED (\n"
    "  SELECT id FROM jobs\n"
    f"   WHERE state = 'queued' AND available_at <= {_PG_NOW}{{kinds}}\n"
    f"     AND {_WORKER_ACTIVE}\n"
    "   ORDER BY priority DESC, order_key, id\n"
    "   LIMIT 1\n"
    "   FOR UPDATE SKIP LOCKED)\n"
    "UPDATE jobs j\n"
    "   SET state = 'running', lease_owner = :wid, attempt = j.attempt + 1,\n"
    "       lease_token = j.lease_token + 1,\n"
    f"       lease_expires_at = {_PG_NOW} + make_interval(secs => :lease_s),\n"
    f"       heartbeat_at = {_PG_NOW}, updated_at = {_PG_NOW}, progress = NULL\n"
    "  FROM c WHERE j.id = c.id\n" + _RETURNING.format(p="j.")
)

GROUP_PROCESSING = (
    update(groups)
    .where(
        groups.c.id == bindparam("b_group"),
        groups.c.state.in_([str(GroupState.COMPLETE), str(GroupState.INCOMPLETE)]),
    )
    .values(state=str(GroupState.PROCESSING), updated_at=bindparam("b_now", type_=UTCDateTime()))
)
SUCCEED = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_job"),
        jobs.c.state == str(JobState.RUNNING),
        jobs.c.lease_token == bindparam("b_token"),
    )
    .values(
        state=str(JobState.SUCCEEDED),
        finished_at=bindparam("b_now", type_=UTCDateTime()),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
        heartbeat_at=bindparam("b_now", type_=UTCDateTime()),
        progress=1.0,
    )
)


def claim_statement(postgres: bool, with_kinds: bool) -> Any:
    """The claim of one dialect, optionally restricted to ``:kinds``."""
    sql = POSTGRES_CLAIM if postgres else SQLITE_CLAIM
    sql = sql.replace("{kinds}", " AND kind IN :kinds" if with_kinds else "")
    params = [bindparam("now", type_=UTCDateTime()), bindparam("wid", type_=String())]
    if with_kinds:
        params.append(bindparam("kinds", expanding=True))
    if not postgres:
        params.append(bindparam("expires", type_=UTCDateTime()))
    return (
        text(sql)
        .bindparams(*params)
        .columns(
            id=Integer(),
            order_key=UTCDateTime(),
            heartbeat_at=UTCDateTime(),
            lease_expires_at=UTCDateTime(),
            payload=JSON(),
        )
    )
