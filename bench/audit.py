"""Audit append throughput: the 16-chain log against one global chain and a plain insert, one run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.audit [--seconds 5]

It makes a database of its own, migrates it (so `bff.audit_log` has the 16 chains of migration 0102),
and adds two tables with the same columns for the baselines in the same run: `single_chain` (the
pre-0102 trigger: one advisory lock and the newest row's hash for every record of the province) and
`plain` (no trigger). Each variant is driven by N concurrent writers, each inserting one record per
transaction, for the given number of seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bff.platform.migrate import migrate

SINGLE = """
CREATE TABLE bench_single (LIKE bff.audit_log INCLUDING DEFAULTS);
CREATE SEQUENCE bench_single_seq;
CREATE FUNCTION bench_single_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(5920348751);
    NEW.seq := nextval('bench_single_seq');
    NEW.at := date_trunc('milliseconds', clock_timestamp());
    SELECT hash INTO last_hash FROM bench_single ORDER BY seq DESC LIMIT 1;
    NEW.prev_hash := coalesce(last_hash, '\\x'::bytea);
    NEW.hash := sha256(NEW.prev_hash || convert_to(concat_ws(chr(31), NEW.seq::text, NEW.subject,
        NEW.action, NEW.object, NEW.result, NEW.channel, NEW.request_id), 'UTF8'));
    RETURN NEW;
END $$;
CREATE TRIGGER bench_single_chain BEFORE INSERT ON bench_single FOR EACH ROW EXECUTE FUNCTION bench_single_chain();
ALTER TABLE bench_single ADD PRIMARY KEY (seq);
CREATE TABLE bench_plain (LIKE bff.audit_log INCLUDING DEFAULTS);
CREATE SEQUENCE bench_plain_seq;
ALTER TABLE bench_plain ALTER COLUMN seq SET DEFAULT nextval('bench_plain_seq'), ADD PRIMARY KEY (seq);
"""
INSERTS = {
    "16 chains (bff.audit_log)": "INSERT INTO bff.audit_log (seq, at, subject, action, object, result, channel,"
    " request_id, prev_hash, hash) VALUES (0, now(), $1, 'bench', 'o', 'ok', 'app', $2, '\\x', '\\x')",
    "one chain (before 0102)": "INSERT INTO bench_single (seq, at, subject, action, object, result, channel,"
    " request_id, prev_hash, hash) VALUES (0, now(), $1, 'bench', 'o', 'ok', 'app', $2, '\\x', '\\x')",
    "plain insert": "INSERT INTO bench_plain (at, subject, action, object, result, channel, request_id,"
    " prev_hash, hash) VALUES (now(), $1, 'bench', 'o', 'ok', 'app', $2, '\\x', '\\x')",
}


async def drive(pool: asyncpg.Pool, sql: str, writers: int, seconds: float) -> float:
    deadline = time.monotonic() + seconds
    counts = [0] * writers

    async def writer(n: int) -> None:
        async with pool.acquire() as conn:
            while time.monotonic() < deadline:
                await conn.execute(sql, f"p-{n}", uuid.uuid4().hex)
                counts[n] += 1

    started = time.monotonic()
    await asyncio.gather(*(writer(n) for n in range(writers)))
    return sum(counts) / (time.monotonic() - started)


async def main(seconds: float) -> None:
    admin_url = os.environ["DATABASE_URL"]
    name = f"sx_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        await conn.execute(SINGLE)
        await conn.close()
        pool = await asyncpg.create_pool(url, min_size=16, max_size=16)
        assert pool is not None
        print(f"| writers | {' | '.join(INSERTS)} | 16 chains / plain | one chain / plain |")
        print("| --- |" + " --- |" * (len(INSERTS) + 2))
        for writers in (1, 16):
            rates = [await drive(pool, sql, writers, seconds) for sql in INSERTS.values()]
            plain = rates[-1]
            cells = " | ".join(f"{r:,.0f}/s" for r in rates)
            print(f"| {writers} | {cells} | {rates[0] / plain:.2f}x | {rates[1] / plain:.2f}x |")
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args().seconds))
