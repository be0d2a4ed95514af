"""Row-level helpers every recipe uses: find a row by natural key, update-or-insert by id.

A unit of work runs inside `emproc.ispyb.retry.run_in_transaction`; on a first attempt it
may trust the ids stored in the id map, after a failed attempt only the database (the lost
commit may have happened), hence `known_or_found`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa


def primary_key(model: Any) -> sa.Column:
    (column,) = model.__table__.primary_key.columns
    return column


def find_id(connection: sa.Connection, model: Any, **criteria: Any) -> int | None:
    """The lowest primary key of `model` rows matching `criteria`, or None."""
    pk = primary_key(model)
    query = sa.select(pk).where(*(model.__table__.c[k] == v for k, v in criteria.items()))
    return connection.execute(query.order_by(pk).limit(1)).scalar()


def upsert(
    connection: sa.Connection, model: Any, row_id: int | None, values: Mapping[str, Any]
) -> int:
    """Update row `row_id` of `model` with `values`, or insert it if absent; return its id."""
    pk = primary_key(model)
    if row_id is not None:
        result = connection.execute(sa.update(model).where(pk == row_id).values(**values))
        if result.rowcount:
            return row_id
    return connection.execute(sa.insert(model).values(**values)).inserted_primary_key[0]


def upsert_by_key(
    connection: sa.Connection, model: Any, key: Mapping[str, Any], values: Mapping[str, Any]
) -> int:
    """The row with natural `key` updated with `values`, or inserted; return its id."""
    return upsert(connection, model, find_id(connection, model, **key), {**key, **values})


def known_or_found(
    connection: sa.Connection,
    known_ids: Mapping[str, Any],
    name: str,
    attempt: int,
    look_up_unknown: bool,
    model: Any,
    **natural_key: Any,
) -> int | None:
    """A row's id: from the id map on a first attempt, else by its natural key (always after
    a failed attempt, whose commit may have happened unseen; for a first attempt only when
    `look_up_unknown`)."""
    row_id = known_ids.get(name) if attempt == 1 else None
    if row_id is None and (attempt > 1 or look_up_unknown):
        row_id = find_id(connection, model, **natural_key)
    return row_id


def upsert_known_or_found(
    connection: sa.Connection,
    known_ids: Mapping[str, Any],
    name: str,
    attempt: int,
    model: Any,
    natural_key: Mapping[str, Any],
    values: Mapping[str, Any],
) -> int:
    """`known_or_found` (looking up unknown rows) then `upsert` with the key's columns set."""
    row_id = known_or_found(connection, known_ids, name, attempt, True, model, **natural_key)
    return upsert(connection, model, row_id, {**values, **natural_key})


def upsert_children(
    connection: sa.Connection,
    model: Any,
    parent: tuple[str, int],
    key: str,
    rows: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, int], list[int]]:
    """The rows of `model` under one parent (`parent` = (column, id)), matched by their `key`
    column: each of `rows` updated or inserted. Returns ({str(key value): id}, ids of the
    parent's rows whose key is not among `rows`), the latter for the caller to delete."""
    parent_column, parent_id = parent
    table = model.__table__
    existing = dict(
        connection.execute(
            sa.select(table.c[key], primary_key(model)).where(table.c[parent_column] == parent_id)
        ).all()
    )
    ids = {
        str(values[key]): upsert(
            connection, model, existing.pop(values[key], None), {**values, parent_column: parent_id}
        )
        for values in rows
    }
    return ids, list(existing.values())
