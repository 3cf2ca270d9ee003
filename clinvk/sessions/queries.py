"""The WHERE clauses both stores build, written once for either driver's placeholder (SQLite's ``?``,
psycopg's ``%s``)."""

from __future__ import annotations

from typing import Any, Iterable

# A session the CLI can resume: it has the CLI's own session id.
RESUMABLE = ("backend_session_id IS NOT NULL", "backend_session_id != ''")


def matching(mark: str, conditions: Iterable[str] = (), **equal: Any) -> tuple[str, list[Any]]:
    """`` WHERE …`` ('' when there is nothing to match) of the fixed ``conditions`` and ``column = value``
    for each value that is not None, and the values to bind."""
    given = {column: value for column, value in equal.items() if value is not None}
    where = [*conditions, *(f"{column} = {mark}" for column in given)]
    return (f" WHERE {' AND '.join(where)}" if where else ""), list(given.values())


def id_prefix(mark: str, prefix: str, owner: str | None) -> tuple[str, list[Any]]:
    """`` WHERE …`` for the ids that start with ``prefix`` (of ``owner``'s sessions, unless None).

    A range on the primary key uses its index (LIKE would not: it is case-insensitive); every id
    starting with ``prefix`` sorts between ``prefix`` and ``prefix + "g"``, as 'g' > 'f' > '9'."""
    clause, args = matching(mark, (f"id >= {mark}", f"id < {mark}"), owner=owner)
    return clause, [prefix, prefix + "g", *args]
