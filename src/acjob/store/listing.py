"""Listing jobs: filters, newest first, pages joined by opaque cursors."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidRequest
from ..model import State

#: Above this many names in a prefix's range, a page walks the jobs newest first and
#: keeps those whose name matches (the matches are dense: a page is found soon) rather
#: than sorting every match's position (its cost grows with the matches: 100 ms for a
#: million). Counting up to it costs at most about a millisecond.
DENSE_NAMES = 10_000


def page(
    conn: sqlite3.Connection,
    *,
    states: Sequence[State] = (),
    labels: dict[str, str] | None = None,
    name_prefix: str | None = None,
    backend: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    document: str | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[list[int], str | None]:
    """Return the positions (``jobs.pos``) of one page of jobs, newest first, and the
    next page's cursor.

    ``document`` keeps only jobs that have a document of this kind; ``tags`` keeps
    those whose document has every tag (an empty value matches any value).

    Raises:
        InvalidRequest: the cursor was not made here.
    """
    where: list[str] = []
    args: list[Any] = []
    joins: list[str] = []
    order = "jobs.pos"
    for n, (key, value) in enumerate((labels or {}).items()):
        # The first label drives the query through its index, already in job order;
        # any other is a lookup in the same index.
        if n == 0:
            joins.append("JOIN labels AS l0 ON l0.job_pos = jobs.pos")
            where.append("l0.key = ? AND l0.value = ?")
            order = "l0.job_pos"
        else:
            where.append("EXISTS (SELECT 1 FROM labels WHERE labels.job_pos = jobs.pos"
                         " AND labels.key = ? AND labels.value = ?)")
        args.extend((key, value))
    if cursor:
        where.append(f"{order} < ?")
        args.append(decode_cursor(cursor))
    # The name index drives the query only when a prefix's names are few (see below):
    # the other columns are then checked on those jobs alone (the unary + keeps their
    # indexes out), not the other way round (the jobs of a state walked newest first
    # until enough have a name in the range: a scan of the table for a rare name).
    names: list[str] = []
    names_args: list[Any] = []
    if name_prefix:
        # Case-sensitive, as the names are; a range of the name index. Its matches are
        # in name order: a few are sorted by position from the index alone (only
        # positions are selected, so no job's row is read), many are met soon enough
        # walking the jobs newest first, the index put aside.
        names.append("jobs.name >= ?")
        names_args.append(name_prefix)
        if (above := _above(name_prefix)) is not None:
            names.append("jobs.name < ?")
            names_args.append(above)
    by_name = bool(names) and not labels and not _dense(conn, " AND ".join(names), names_args)
    other = "+" if by_name else ""
    if states:
        where.append(f"{other}jobs.state IN ({','.join('?' * len(states))})")
        args.extend(s.value for s in states)
    if names:
        dense = not labels and not by_name
        where.extend("+" + term if dense else term for term in names)
        args.extend(names_args)
    if backend is not None:
        where.append(f"{other}jobs.backend = ?")
        args.append(backend)
    if document is not None:
        where.append("jobs.id IN (SELECT job_id FROM documents WHERE kind = ?)")
        args.append(document)
    for key, value in (tags or {}).items():
        # json_each compares keys as they are: a JSON path could not name every key
        # (one with a double quote, say).
        tagged = ("jobs.id IN (SELECT job_id FROM documents,"
                  " json_each(documents.body, '$.tags') WHERE json_each.key = ?")
        if value == "":  # any value
            where.append(tagged + ")")
            args.append(key)
        else:
            where.append(tagged + " AND json_each.value = ?)")
            args.extend((key, value))
    # Built from constant fragments only; every value is a bound parameter.
    sql = "SELECT jobs.pos AS pos FROM jobs " + " ".join(joins)  # noqa: S608
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order} DESC LIMIT ?"
    args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["pos"]) if more and rows else None
    return [r["pos"] for r in rows], next_cursor


def _dense(conn: sqlite3.Connection, names: str, args: list[Any]) -> bool:
    """Tell whether more than :data:`DENSE_NAMES` jobs have a name in this range."""
    # Built from constant fragments only; every value is a bound parameter.
    row = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {names}"  # noqa: S608
                       " LIMIT ?)", [*args, DENSE_NAMES + 1]).fetchone()
    return bool(row[0] > DENSE_NAMES)


def _above(prefix: str) -> str | None:
    """Return the least string above every string that starts with ``prefix`` (UTF-8
    keeps code point order, as SQLite compares), or ``None`` if there is none."""
    stem = prefix.rstrip("\U0010ffff")  # nothing is above U+10FFFF: carry to the left
    if not stem:
        return None
    last = ord(stem[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000  # surrogates are no characters of a stored name
    return stem[:-1] + chr(last)


def encode_cursor(pos: int) -> str:
    """Return the opaque cursor of a list page that continues below ``pos``."""
    return base64.urlsafe_b64encode(f"p{pos}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the position a cursor made by :func:`encode_cursor` stands for.

    Raises:
        InvalidRequest: anything else.
    """
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("p") or not text[1:].isdigit() or len(text) > 19:
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the cursor is not valid", code="invalid_cursor") from exc
