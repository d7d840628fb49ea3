"""asyncpg with its defaults (statement cache of 100, every query a named prepared statement), on a
pool of as many connections as workers, each worker a concurrent task; with --connect, each worker
on a connection of its own from asyncpg.connect()."""
import sys
import asyncio

import asyncpg

from workload import SELECT_A, SELECT_B, SET_USER, UPDATE_C, UPDATE_P, Checker, dollar, load_spec, ssl_context


class OneConnection:
    """The pool's acquire() for a single connection of asyncpg.connect()."""

    def __init__(self, conn):
        self.conn = conn

    def acquire(self):
        return self

    async def __aenter__(self):
        return self.conn

    async def __aexit__(self, *exc):
        return False


async def worker(pool, checker, w, spec):
    for k in range(spec["transactions"]):
        user, neuron, coherence, phase = checker.plan(w, k)
        where = f"worker {w} tx {k}"
        echo = f"w{w}k{k}"
        try:
            async with pool.acquire() as conn:
                async with conn.transaction():
                    results = [
                        [tuple(r) for r in await conn.fetch(dollar(SET_USER), user["id"], neuron_uuid(user["id"]))],
                        [tuple(r) for r in await conn.fetch(dollar(SELECT_A), 0.0)],
                        [tuple(r) for r in await conn.fetch(dollar(SELECT_B), echo, "%")],
                        [tuple(r) for r in await conn.fetch(dollar(UPDATE_C), coherence, neuron_uuid(neuron))],
                        [tuple(r) for r in await conn.fetch(dollar(UPDATE_P), phase, neuron_uuid(neuron))],
                    ]
            checker.check_transaction(where, results, user, echo, coherence, phase)
        except Exception as e:  # every failure is reported, none stops the run
            checker.error(where, e)


def neuron_uuid(text):
    import uuid

    return uuid.UUID(text)


async def main():
    spec = load_spec()
    checker = Checker(spec)
    params = dict(host=spec["host"], port=spec["port"], database=spec["database"], user=spec["user"], password=spec["password"], ssl=ssl_context(spec))
    if "--connect" in sys.argv:
        conns = [await asyncpg.connect(**params) for _ in range(spec["workers"])]
        try:
            await asyncio.gather(*(worker(OneConnection(c), checker, w, spec) for w, c in enumerate(conns)))
        finally:
            for c in conns:
                await c.close()
        checker.report("asyncpg-connect")
        return
    pool = await asyncpg.create_pool(**params, min_size=spec["workers"], max_size=spec["workers"])
    try:
        await asyncio.gather(*(worker(pool, checker, w, spec) for w in range(spec["workers"])))
    finally:
        await pool.close()
    checker.report("asyncpg")


if __name__ == "__main__":
    asyncio.run(main())
