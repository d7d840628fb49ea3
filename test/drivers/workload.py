"""The driver compatibility workload, shared by the Python driver programs (test/drivers.test.ts runs them).

Each transaction sets the user transaction-locally, runs two tagged parameterised SELECTs and two
tagged UPDATEs of different columns (RETURNING what they changed), and commits. `check_*` record
every row that belongs to another user and every statement whose tag or result is not the one sent:
a pooler that mixes prepared statements up shows as a mismatch, not only as an error.
"""
import json
import sys

# Names the user for this transaction only (docs/security.md); echoes the id the check compares.
SET_USER = "SELECT %s::text AS user_id, neuralblitz.set_user_context(%s::uuid, NULL)"
SELECT_A = "SELECT 'A'::text AS tag, id::text AS id, user_id::text AS user_id, label FROM neuralblitz.quantum_neurons WHERE amplitude >= %s ORDER BY label"
SELECT_B = "SELECT 'B'::text AS tag, count(*)::int AS n, %s::text AS echo FROM neuralblitz.quantum_neurons WHERE label LIKE %s"
UPDATE_C = "UPDATE neuralblitz.quantum_neurons SET coherence = %s WHERE id = %s RETURNING 'C'::text AS tag, user_id::text AS user_id, coherence, amplitude"
UPDATE_P = "UPDATE neuralblitz.quantum_neurons SET phase = %s WHERE id = %s RETURNING 'P'::text AS tag, user_id::text AS user_id, phase, coherence"


def dollar(sql):
    """The same statement with $1, $2 placeholders (asyncpg)."""
    out, n = "", 0
    for part in sql.split("%s"):
        out += part
        n += 1
        out += f"${n}"
    return out[: -len(f"${n}")]


def load_spec():
    return json.loads(sys.stdin.read())


def libpq_tls(spec):
    """libpq's parameters for a verified TLS connection (psycopg 3, psycopg2): the outputs URL's."""
    return {"sslmode": "verify-full", "sslrootcert": spec["caFile"]}


def ssl_context(spec):
    """A TLS context verifying the server's certificate and name against the stack's CA (asyncpg)."""
    import ssl

    return ssl.create_default_context(cafile=spec["caFile"])


class Checker:
    def __init__(self, spec):
        self.spec = spec
        self.mismatches = []
        self.errors = []
        self.transactions = 0

    def plan(self, worker, k):
        """User, neuron and values of transaction k of a worker: deterministic and distinct."""
        users = self.spec["users"]
        user = users[(worker * 7 + k) % len(users)]
        neuron = user["neurons"][k % len(user["neurons"])]
        coherence = ((worker * 1000 + k) % 997) / 1000.0
        phase = ((worker * 1000 + k) % 613) / 100.0
        return user, neuron, coherence, phase

    def mismatch(self, where, what):
        if len(self.mismatches) < 20:
            self.mismatches.append(f"{where}: {what}")
        elif len(self.mismatches) == 20:
            self.mismatches.append("... (more)")

    def check_set_user(self, where, row, user):
        if row[0] != user["id"]:
            self.mismatch(where, f"set_user_context echoed {row[0]!r}, not the user {user['id']}")

    def check_a(self, where, rows, user):
        if len(rows) != len(user["neurons"]):
            self.mismatch(where, f"SELECT A returned {len(rows)} rows, the user has {len(user['neurons'])}")
        for r in rows:
            if r[0] != "A":
                self.mismatch(where, f"SELECT A returned a row of statement {r[0]!r}: {r!r}")
            elif r[2] != user["id"]:
                self.mismatch(where, f"SELECT A returned a row of user {r[2]}, not {user['id']}")

    def check_b(self, where, rows, user, echo):
        if len(rows) != 1 or rows[0][0] != "B" or rows[0][2] != echo or rows[0][1] != len(user["neurons"]):
            self.mismatch(where, f"SELECT B returned {rows!r}, expected [('B', {len(user['neurons'])}, {echo!r})]")

    def check_update(self, where, rows, tag, user, value):
        if len(rows) != 1 or rows[0][0] != tag or rows[0][1] != user["id"] or abs(float(rows[0][2]) - value) > 1e-9:
            self.mismatch(where, f"UPDATE {tag} returned {rows!r}, expected one row ({tag!r}, {user['id']!r}, {value})")

    def check_transaction(self, where, results, user, echo, coherence, phase):
        """The five results of one workload transaction (set user, A, B, UPDATE C, UPDATE P), counted once checked."""
        self.check_set_user(where, results[0][0], user)
        self.check_a(where, results[1], user)
        self.check_b(where, results[2], user, echo)
        self.check_update(where, results[3], "C", user, coherence)
        self.check_update(where, results[4], "P", user, phase)
        self.transactions += 1

    def error(self, where, e):
        if len(self.errors) < 20:
            self.errors.append(f"{where}: {type(e).__name__}: {e}")
        elif len(self.errors) == 20:
            self.errors.append("... (more)")

    def report(self, driver):
        print(json.dumps({"driver": driver, "transactions": self.transactions, "errors": self.errors, "mismatches": self.mismatches}))
