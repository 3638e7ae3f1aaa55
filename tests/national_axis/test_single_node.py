"""`Database.single_node`: a periodic job's round runs on one node at a time (PostgreSQL advisory
lock), and always on SQLite (one node)."""

from __future__ import annotations

from pathlib import Path

from lgsp.core.store.database import Database


async def test_two_nodes_never_hold_the_same_job_at_once(pg_url: str) -> None:
    first, second = Database(pg_url), Database(pg_url)
    try:
        async with first.single_node("national_axis:poll") as mine:
            assert mine
            async with second.single_node("national_axis:poll") as theirs:
                assert not theirs  # the other node skips this round
            async with second.single_node("national_axis:track") as other_job:
                assert other_job  # another job is not held up
        async with second.single_node("national_axis:poll") as theirs:
            assert theirs  # released when the round ends
        try:
            async with first.single_node("national_axis:poll") as mine:
                assert mine
                raise RuntimeError("the round failed")
        except RuntimeError:
            pass
        async with second.single_node("national_axis:poll") as theirs:
            assert theirs  # released after a failed round too
    finally:
        await first.close()
        await second.close()


async def test_sqlite_is_one_node(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'lgsp.db'}")
    try:
        async with db.single_node("x") as a, db.single_node("x") as b:
            assert a and b
    finally:
        await db.close()
