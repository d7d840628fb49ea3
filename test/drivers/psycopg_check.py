"""psycopg 3 with its defaults (prepare_threshold 5), one connection per thread; with --pipeline,
every transaction's statements are sent in pipeline mode."""
import sys
import threading

import psycopg

from workload import SELECT_A, SELECT_B, SET_USER, UPDATE_C, UPDATE_P, Checker, libpq_tls, load_spec


def worker(spec, checker, w, pipeline, lock):
    try:
        conn = psycopg.connect(host=spec["host"], port=spec["port"], dbname=spec["database"], user=spec["user"], password=spec["password"], **libpq_tls(spec))
    except Exception as e:  # reported (e.g. a certificate the CA did not sign)
        with lock:
            checker.error(f"worker {w} connect", e)
        return
    try:
        for k in range(spec["transactions"]):
            user, neuron, coherence, phase = checker.plan(w, k)
            where = f"worker {w} tx {k}"
            echo = f"w{w}k{k}"
            try:
                with conn.transaction():
                    if pipeline:
                        with conn.pipeline():
                            cs = [conn.cursor() for _ in range(5)]
                            cs[0].execute(SET_USER, (user["id"], user["id"]))
                            cs[1].execute(SELECT_A, (0.0,))
                            cs[2].execute(SELECT_B, (echo, "%"))
                            cs[3].execute(UPDATE_C, (coherence, neuron))
                            cs[4].execute(UPDATE_P, (phase, neuron))
                        results = [c.fetchall() for c in cs]
                    else:
                        results = [
                            conn.execute(SET_USER, (user["id"], user["id"])).fetchall(),
                            conn.execute(SELECT_A, (0.0,)).fetchall(),
                            conn.execute(SELECT_B, (echo, "%")).fetchall(),
                            conn.execute(UPDATE_C, (coherence, neuron)).fetchall(),
                            conn.execute(UPDATE_P, (phase, neuron)).fetchall(),
                        ]
                with lock:
                    checker.check_transaction(where, results, user, echo, coherence, phase)
            except Exception as e:  # every failure is reported, none stops the run
                with lock:
                    checker.error(where, e)
    finally:
        conn.close()


def main():
    spec = load_spec()
    pipeline = "--pipeline" in sys.argv
    checker = Checker(spec)
    lock = threading.Lock()
    threads = [threading.Thread(target=worker, args=(spec, checker, w, pipeline, lock)) for w in range(spec["workers"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    checker.report("psycopg-pipeline" if pipeline else "psycopg")


if __name__ == "__main__":
    main()
