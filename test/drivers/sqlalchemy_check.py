"""SQLAlchemy 1.4 (Debian 12's), sync on psycopg2 and async on asyncpg, with the pattern of
docs/application.md: an `after_begin` listener names the session's user in every transaction the
Session begins, so the reload after a commit (expire_on_commit) sees the row too. Workers run
concurrently, each with sessions of its own. With --naive, the user is set once inside
session.begin() instead: the report then says whether the reload failed (the documented trap).
"""
import asyncio
import sys
import threading
import uuid

from sqlalchemy import Column, Float, String, create_engine, event, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, declarative_base

from workload import Checker, libpq_tls, load_spec, ssl_context

Base = declarative_base()


class Neuron(Base):
    __tablename__ = "quantum_neurons"
    __table_args__ = {"schema": "neuralblitz"}
    id = Column(UUID(as_uuid=False), primary_key=True)
    user_id = Column(UUID(as_uuid=False), nullable=False)
    label = Column(String, nullable=False)
    coherence = Column(Float, nullable=False)
    phase = Column(Float, nullable=False)


# Names the user for this transaction only (docs/security.md): the listener runs it in every one.
SET_USER = text("SELECT neuralblitz.set_user_context(CAST(:u AS uuid), NULL)")


def name_the_user(session, transaction, connection):
    user_id = session.info.get("user_id")
    if user_id is None:
        raise RuntimeError("session.info['user_id'] is not set")
    connection.execute(SET_USER, {"u": user_id})


def plan(checker, w, k):
    """As Checker.plan, but no two of the 4 workers ever change the same neuron (with the suite's 6
    users of 3 neurons), so the value read back after the commit must be this transaction's: worker
    w uses neuron index w mod 3, and only workers 0 and 3 share one, but a worker's users have the
    parity of w, since 4k is even."""
    users = checker.spec["users"]
    user = users[(w + 4 * k) % len(users)]
    neuron = user["neurons"][w % len(user["neurons"])]
    return user, neuron, ((w * 1000 + k) % 997) / 1000.0, 0.0


def url(spec, dialect):
    return f"postgresql+{dialect}://{spec['user']}:{spec['password']}@{spec['host']}:{spec['port']}/{spec['database']}"


def engine_args(spec, dialect):
    """TLS verified against the stack's CA: libpq's parameters for psycopg2, an SSLContext for asyncpg."""
    return {"connect_args": {"ssl": ssl_context(spec)} if dialect == "asyncpg" else libpq_tls(spec)}


def one_tx(checker, where, user, seen):
    """Checks shared by sync and async: the session saw exactly the user's neurons."""
    if sorted(i for i, _ in seen) != sorted(user["neurons"]):
        checker.mismatch(where, f"the session saw neurons {[i for i, _ in seen]}, the user has {user['neurons']}")
    for _, owner in seen:
        if owner != user["id"]:
            checker.mismatch(where, f"a neuron of user {owner}, not {user['id']}")


def sync_worker(spec, checker, engine, w, lock):
    for k in range(spec["transactions"]):
        user, neuron_id, coherence, _ = plan(checker, w, k)
        where = f"worker {w} tx {k}"
        try:
            with Session(engine, info={"user_id": user["id"]}) as session:
                with session.begin():
                    neurons = session.execute(select(Neuron).order_by(Neuron.label)).scalars().all()
                    seen = [(n.id, n.user_id) for n in neurons]
                    neuron = session.get(Neuron, neuron_id)
                    neuron.coherence = coherence
                # expire_on_commit: this reload runs in a new transaction, which the listener names.
                after = neuron.coherence
                session.commit()
            with lock:
                one_tx(checker, where, user, seen)
                if abs(after - coherence) > 1e-9:
                    checker.mismatch(where, f"coherence {after} after commit, set {coherence}")
                checker.transactions += 1
        except Exception as e:  # every failure is reported, none stops the run
            with lock:
                checker.error(where, e)


async def async_worker(spec, checker, engine, w):
    for k in range(spec["transactions"]):
        user, neuron_id, coherence, _ = plan(checker, w, k)
        where = f"worker {w} tx {k}"
        try:
            async with AsyncSession(engine, info={"user_id": user["id"]}) as session:
                async with session.begin():
                    neurons = (await session.execute(select(Neuron).order_by(Neuron.label))).scalars().all()
                    seen = [(n.id, n.user_id) for n in neurons]
                    neuron = await session.get(Neuron, neuron_id)
                    neuron.coherence = coherence
                # A new transaction (autobegin), named by the same listener.
                await session.refresh(neuron)
                after = neuron.coherence
                await session.commit()
            one_tx(checker, where, user, seen)
            if abs(after - coherence) > 1e-9:
                checker.mismatch(where, f"coherence {after} after commit, set {coherence}")
            checker.transactions += 1
        except Exception as e:  # every failure is reported, none stops the run
            checker.error(where, e)


def naive(spec):
    """The user set once inside session.begin(): the reload after commit has no user."""
    engine = create_engine(url(spec, "psycopg2"), pool_size=1, **engine_args(spec, "psycopg2"))
    user = spec["users"][0]
    try:
        with Session(engine) as session:
            with session.begin():
                session.execute(SET_USER, {"u": user["id"]})
                neuron = session.get(Neuron, user["neurons"][0])
                neuron.label = neuron.label
            try:
                neuron.coherence
                return "no error"
            except Exception as e:
                return type(e).__name__
    finally:
        engine.dispose()


def main():
    spec = load_spec()
    checker = Checker(spec)
    if "--naive" in sys.argv:
        print(__import__("json").dumps({"driver": "sqlalchemy-naive", "reload_error": naive(spec)}))
        return
    if "--async" in sys.argv:
        event.listen(Session, "after_begin", name_the_user)

        async def run():
            engine = create_async_engine(url(spec, "asyncpg"), pool_size=spec["workers"], **engine_args(spec, "asyncpg"))
            try:
                await asyncio.gather(*(async_worker(spec, checker, engine, w) for w in range(spec["workers"])))
            finally:
                await engine.dispose()

        asyncio.run(run())
        checker.report("sqlalchemy-async")
        return
    event.listen(Session, "after_begin", name_the_user)
    engine = create_engine(url(spec, "psycopg2"), pool_size=spec["workers"], **engine_args(spec, "psycopg2"))
    lock = threading.Lock()
    threads = [threading.Thread(target=sync_worker, args=(spec, checker, engine, w, lock)) for w in range(spec["workers"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    checker.report("sqlalchemy")


if __name__ == "__main__":
    main()
