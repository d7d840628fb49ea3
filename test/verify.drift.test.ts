// nbdb verify against privilege drift (issue 13): every drift the issue found unseen is made on a
// real stack, and each must be named, with what to do, by nbdb verify and (except passwords, which
// only the stack's state knows) by psql -f sql/verify_schema.sql alike.
import { expect } from "chai";
import { execFile } from "child_process";
import * as path from "path";
import { Client } from "pg";
import { Drift, verifyStack } from "../scripts/ops/verify";
import { VERIFY_SQL_FILE } from "../scripts/ops/verifySql";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { findBinaries } from "../scripts/local/system";
import { query, uniqueStack } from "./helpers";

const MONTH = new Date().toISOString().slice(0, 7).replace("-", "");

/** Each drift of the issue: how it is made (as the superuser) and the drift nbdb verify must name. */
const DRIFTS: { make: string; kind: string; name: string; fix: RegExp }[] = [
  { make: "ALTER ROLE nb_app BYPASSRLS", kind: "role", name: "nb_app", fix: /ALTER ROLE nb_app WITH .*NOBYPASSRLS/ },
  { make: "ALTER ROLE nb_readonly SUPERUSER", kind: "role", name: "nb_readonly", fix: /ALTER ROLE nb_readonly WITH .*NOSUPERUSER/ },
  { make: "ALTER ROLE nb_pgbouncer CREATEROLE", kind: "role", name: "nb_pgbouncer", fix: /NOCREATEROLE/ },
  { make: "ALTER ROLE nb_auditor VALID UNTIL '2001-01-01'", kind: "role", name: "nb_auditor", fix: /VALID UNTIL 'infinity'/ },
  { make: "GRANT nb_owner TO nb_app", kind: "membership", name: "nb_app member of nb_owner", fix: /REVOKE nb_owner FROM nb_app/ },
  { make: "GRANT pg_read_server_files TO nb_app", kind: "membership", name: "nb_app member of pg_read_server_files", fix: /REVOKE pg_read_server_files FROM nb_app/ },
  { make: "GRANT pg_execute_server_program TO nb_app", kind: "membership", name: "nb_app member of pg_execute_server_program", fix: /REVOKE/ },
  { make: "ALTER ROLE nb_app SET nb.user_id = '00000000-0000-0000-0000-000000000001'", kind: "setting", name: "role nb_app nb.user_id", fix: /ALTER ROLE nb_app RESET nb.user_id/ },
  { make: "ALTER ROLE nb_readonly SET statement_timeout = '1h'", kind: "setting", name: "role nb_readonly statement_timeout", fix: /ALTER ROLE nb_readonly SET statement_timeout/ },
  { make: "ALTER DATABASE neuralblitz SET nb.user_id = '00000000-0000-0000-0000-000000000001'", kind: "setting", name: "database neuralblitz nb.user_id", fix: /ALTER DATABASE neuralblitz RESET nb.user_id/ },
  { make: "ALTER DATABASE neuralblitz SET nb.data_key = 'leaked-key'", kind: "setting", name: "database neuralblitz nb.data_key", fix: /ALTER DATABASE neuralblitz RESET nb.data_key/ },
  { make: "GRANT SELECT (db_role) ON neuralblitz.golden_dag_audit TO nb_app", kind: "column grant", name: "nb_app SELECT on golden_dag_audit.db_role", fix: /REVOKE SELECT \(db_role\) ON TABLE neuralblitz.golden_dag_audit FROM nb_app/ },
  { make: "CREATE EXTENSION hstore SCHEMA public", kind: "extension", name: "hstore", fix: /DROP EXTENSION hstore/ },
  { make: "ALTER TABLE neuralblitz.golden_dag_audit_default DISABLE TRIGGER golden_dag_guard", kind: "partition trigger", name: "golden_dag_audit_default.golden_dag_guard", fix: /sql\/admin\/golden_dag_trail.sql/ },
  { make: "SET ROLE nb_audit; GRANT UPDATE, DELETE, TRUNCATE ON neuralblitz.golden_dag_audit TO nb_audit; RESET ROLE", kind: "owner privilege", name: "golden_dag_audit", fix: /REVOKE ALL ON neuralblitz.golden_dag_audit FROM nb_audit/ },
  { make: "GRANT UPDATE, DELETE ON neuralblitz.golden_dag_seals TO nb_owner", kind: "grant", name: "nb_owner UPDATE on table golden_dag_seals", fix: /REVOKE UPDATE ON TABLE neuralblitz.golden_dag_seals FROM nb_owner/ },
  { make: "GRANT CREATE ON SCHEMA public TO PUBLIC", kind: "schema", name: "public", fix: /schema public/ },
  { make: "CREATE SCHEMA nb_app_schema AUTHORIZATION nb_app", kind: "schema", name: "nb_app_schema", fix: /DROP SCHEMA nb_app_schema/ },
  { make: "GRANT USAGE ON SCHEMA neuralblitz_crypto TO nb_readonly", kind: "schema", name: "neuralblitz_crypto", fix: /schema neuralblitz_crypto/ },
  { make: "GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO nb_app", kind: "grant elsewhere", name: "nb_app EXECUTE on FUNCTION pgbouncer.get_auth(text)", fix: /REVOKE EXECUTE ON FUNCTION pgbouncer.get_auth\(text\) FROM nb_app/ },
  { make: "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO nb_app", kind: "grant elsewhere", name: "nb_app EXECUTE on FUNCTION pg_read_file(text)", fix: /REVOKE/ },
  { make: `DROP TRIGGER refuse_truncate ON neuralblitz.golden_dag_audit_p${MONTH}`, kind: "partition trigger", name: `golden_dag_audit_p${MONTH}.refuse_truncate`, fix: /sql\/admin\/golden_dag_trail.sql/ },
  { make: "DROP EVENT TRIGGER golden_dag_drop", kind: "event trigger", name: "golden_dag_drop", fix: /re-runs sql\/admin\/golden_dag_trail.sql/ },
];

function psqlVerify(url: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) =>
    execFile(path.join(findBinaries().pgBinDir, "psql"), [url, "-X", "-A", "-f", VERIFY_SQL_FILE], (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code) : 0, out: stdout + stderr }),
    ),
  );
}

describe("nbdb verify sees privilege drift", function () {
  const stack = uniqueStack("drift");
  let out: LocalStackOutputs;
  let drifts: Drift[];

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    expect(await verifyStack(stack)).to.deep.equal([]);
    const admin = new Client({ connectionString: out.connections.admin });
    await admin.connect();
    try {
      for (const d of DRIFTS) await admin.query(d.make);
      // An extra pg_cron job, where the server has pg_cron (scheduled as nb_migrator, who may).
      if ((await admin.query("SELECT to_regclass('cron.job') IS NOT NULL AS cron")).rows[0].cron) {
        await admin.query("SET ROLE nb_migrator; SELECT cron.schedule('extra-job', '* * * * *', 'SELECT 1'); RESET ROLE");
      }
      // A changed password of a role the stack knows (as the role itself may).
      await admin.query("ALTER ROLE nb_readonly PASSWORD 'not-the-stack''s'");
    } finally {
      await admin.end();
    }
    drifts = await verifyStack(stack);
  });

  for (const d of DRIFTS) {
    it(`names ${d.make}`, function () {
      const found = drifts.find((x) => x.kind === d.kind && x.name === d.name);
      expect(found, `${d.kind} ${d.name} in ${JSON.stringify(drifts.map((x) => `${x.kind} ${x.name}`))}`).to.not.equal(undefined);
      expect(found!.fix).to.match(d.fix);
    });
  }

  it("names an extra pg_cron job where the server has pg_cron", async function () {
    const [{ cron }] = await query<{ cron: boolean }>(out.connections.admin, "SELECT to_regclass('cron.job') IS NOT NULL AS cron");
    if (!cron) this.skip();
    expect(drifts.find((x) => x.kind === "scheduled job")).to.include({ name: "extra-job", problem: "extra" });
  });

  it("names a changed password of a role the stack knows, and never prints a secret", function () {
    expect(drifts.find((x) => x.kind === "password")).to.include({ name: "nb_readonly", problem: "changed" });
    expect(JSON.stringify(drifts)).to.not.include("leaked-key");
  });

  it("gives the same verdict through psql (passwords aside, which only the stack's state knows)", async function () {
    const viaPsql = await psqlVerify(out.connections.migrator);
    expect(viaPsql.code).to.equal(3);
    for (const d of drifts.filter((x) => x.kind !== "password")) expect(viaPsql.out, `${d.kind} ${d.name}`).to.include(`${d.kind}|${d.name}|`);
    expect(viaPsql.out).to.not.include("leaked-key");
  });
});
