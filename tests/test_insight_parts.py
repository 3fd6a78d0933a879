"""A statement split into parts runs on several connections that read one snapshot, and on
one connection, in turn, when the pool has none to spare: the answer is the same."""

from __future__ import annotations

from contextlib import AsyncExitStack

from app.database import connection
from app.services.insights.grammar import Sql
from app.services.insights.query import fetch_parts

WHO_AND_WHEN = "SELECT pg_backend_pid() AS pid, pg_current_snapshot()::text AS snapshot, $1::int + {part} AS answer"


def statements(count: int) -> list[str]:
    return [WHO_AND_WHEN.format(part=part) for part in range(count)]


def one_parameter() -> Sql:
    sql = Sql()
    sql.param(40, "int")
    return sql


async def test_parts_run_side_by_side_in_one_snapshot(settings, app):
    answers = await fetch_parts(one_parameter(), statements(2))
    rows = [rows[0] for rows in answers]
    assert [row["answer"] for row in rows] == [40, 41]
    assert rows[0]["pid"] != rows[1]["pid"]  # two server processes
    assert rows[0]["snapshot"] == rows[1]["snapshot"]  # the second imported the first's snapshot


async def test_parts_take_turns_on_one_connection_when_the_pool_is_short(settings, app):
    async with AsyncExitStack() as held:
        for _ in range(settings.db_pool_max - 1):  # everything but one connection is busy
            await held.enter_async_context(connection())
        answers = await fetch_parts(one_parameter(), statements(3))
    rows = [rows[0] for rows in answers]
    assert [row["answer"] for row in rows] == [40, 41, 42]  # every part answered, in order
    assert len({row["pid"] for row in rows}) == 1
