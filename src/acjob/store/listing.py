"""Listing jobs: filters, newest first, pages joined by opaque cursors."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidRequest
from ..model import State


def page(
    conn: sqlite3.Connection,
    *,
    states: Sequence[State] = (),
    labels: dict[str, str] | None = None,
    name_prefix: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    document: str | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[list[str], str | None]:
    """Return the ids of one page of jobs, newest first, and the next page's cursor.

    ``document`` keeps only jobs that have a document of this kind; ``tags`` keeps
    those whose document has every tag (an empty value matches any value).

    Raises:
        InvalidRequest: the cursor was not made here.
    """
    where: list[str] = []
    args: list[Any] = []
    if cursor:
        where.append("pos < ?")
        args.append(decode_cursor(cursor))
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        args.extend(s.value for s in states)
    if name_prefix:
        # Case-sensitive, unlike LIKE; substr counts characters, as len() does.
        where.append("substr(json_extract(spec, '$.name'), 1, ?) = ?")
        args.extend((len(name_prefix), name_prefix))
    for key, value in (labels or {}).items():
        where.append("json_extract(spec, '$.labels.' || json_quote(?)) = ?")
        args.extend((key, value))
    if document is not None:
        where.append("id IN (SELECT job_id FROM documents WHERE kind = ?)")
        args.append(document)
    for key, value in (tags or {}).items():
        # json_each compares keys as they are: a JSON path could not name every key
        # (one with a double quote, say).
        tagged = ("id IN (SELECT job_id FROM documents, json_each(documents.body, '$.tags')"
                  " WHERE json_each.key = ?")
        if value == "":  # any value
            where.append(tagged + ")")
            args.append(key)
        else:
            where.append(tagged + " AND json_each.value = ?)")
            args.extend((key, value))
    sql = "SELECT id, pos FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY pos DESC LIMIT ?"
    args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["pos"]) if more and rows else None
    return [r["id"] for r in rows], next_cursor


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
