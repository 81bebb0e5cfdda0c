"""The 12345 knowledge base's entries (sandbox/hotline/kb.py), written on every start (re-runnable)."""

from __future__ import annotations

from datetime import date

import asyncpg

from sandbox.hotline.kb import ENTRIES


async def seed_hotline(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for kb_id, category, question, answer, keywords, department in ENTRIES:
            await conn.execute(
                """
                INSERT INTO sandbox.hotline_kb (kb_id, category, question, answer, keywords, department, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (kb_id) DO UPDATE SET category = EXCLUDED.category, question = EXCLUDED.question,
                    answer = EXCLUDED.answer, keywords = EXCLUDED.keywords, department = EXCLUDED.department,
                    updated_at = EXCLUDED.updated_at
                """,
                kb_id,
                category,
                question,
                answer,
                list(keywords),
                department,
                date(2026, 11, 2),
            )
