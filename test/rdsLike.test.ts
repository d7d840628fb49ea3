// The database layer of the `aws` platform, run for real on a server that behaves like RDS where it
// matters (test/rdsLike.ts): TLS only with verify-full clients, a master user that is no superuser,
// pg_cron preloaded, a pooler reading its auth file. Everything runs the code the aws platform runs:
// the roles as schema/roles.ts renders them, the AdminSql provider with adminSetupSql(), the
// SqlBundle provider with every bundle of sql/ and the generated partition bundle, the grant SQL of
// the privilege model, and the pg_cron schedule as the jobs' role (issue 15 items 1 and 2).
import { expect } from "chai";
import { randomBytes } from "crypto";
import * as fs from "fs";
import { adminSetupSql } from "../infra/database/adminSetup";
import { restoredSchemaSql } from "../infra/database/layer";
import { partitionMaintenanceBundle } from "../infra/database/partitionMaintenance";
import { Bundle, loadCatalog } from "../infra/bundles/catalog";
import { adminSqlProvider } from "../infra/dynamic/adminSql";
import { auditTrailSql } from "../infra/topology/auditTrail";
import { sqlBundleProvider, SqlBundleInputs } from "../infra/dynamic/sqlBundle";
import { packagedRdsCaBundle, RDS_CA_FILE } from "../infra/platform/rdsCa";
import { JOB_ROLE, SCHEDULED_JOBS, maintenanceScheduleSql } from "../infra/topology/maintenanceSchedule";
import { stableScramVerifier } from "../infra/topology/scram";
import { ADMIN_USER } from "../infra/platform/types";
import { DEFAULT_PRIVILEGES, GRANTS, defaultPrivilegeSql, grantSql, revokeSql } from "../schema/privileges";
import { DATABASE, LOGIN_ROLES, ROLES, roleSql } from "../schema/roles";
import { TABLES } from "../schema/tables";
import { query, rejection } from "./helpers";
import { RdsLike, sql, startRdsLike } from "./rdsLike";

describe("the aws platform's database layer on an RDS-like server", function () {
  let rds: RdsLike;
  const passwords: Record<string, string> = Object.fromEntries(LOGIN_ROLES.map((r) => [r, randomBytes(12).toString("hex")]));
  const as = (role: string) => rds.url(role, passwords[role]);

  before(async function () {
    rds = await startRdsLike();
    // 1. Roles, as the layer's postgresql.Role resources create them with `superuser: false` (the Go
    //    provider cannot run here; it leaves the attributes a CREATEROLE role may not name at their
    //    defaults). RDS replicates by itself: no nb_replicator.
    await sql(
      rds.adminUrl,
      ROLES.filter((r) => r.name !== "nb_replicator").flatMap((r) => [
        `CREATE ROLE ${r.name} ${r.login ? `LOGIN PASSWORD '${stableScramVerifier(r.name, passwords[r.name])}'` : "NOLOGIN"}`,
        ...((r as { memberOf?: readonly string[] }).memberOf ?? []).map((m) => `GRANT ${m} TO ${r.name}`),
      ]),
    );
    // schema/roles.ts's roleSql (the local stack's) names NOSUPERUSER and NOBYPASSRLS, which only a superuser may.
    expect(await rejection(sql(rds.adminUrl, [roleSql(ROLES[2], undefined)]))).to.match(/must be superuser/);
    // 2. The administrator step, over verify-full.
    await adminSqlProvider().create!({ sql: adminSetupSql(DATABASE, { pgCron: true }), connection: rds.adminUrl });
    // 3. The schema and the access grants, as the provider runs them (as the master user, a member of nb_owner).
    await sql(rds.adminUrl, [
      "CREATE SCHEMA IF NOT EXISTS neuralblitz AUTHORIZATION nb_owner",
      revokeSql({ role: "PUBLIC", objectType: "database", object: DATABASE, privileges: ["ALL"] }),
      ...GRANTS.filter((g) => g.objectType === "database" || g.objectType === "schema").map(grantSql),
    ]);
    // 4. Every bundle through the SqlBundle provider, as nb_migrator over verify-full.
    const bundles = sqlBundleProvider();
    const apply = async (b: Bundle) =>
      bundles.create!({ bundleName: b.name, kind: b.kind, order: b.order, file: b.file, sql: b.sql, checksum: b.checksum, transactional: b.transactional, connection: as("nb_migrator") } satisfies SqlBundleInputs);
    for (const b of loadCatalog()) await apply(b);
    // 4b. The audit trail's trust boundary (the layer's `audit-trail` AdminSql), before partition
    //     maintenance. Its event triggers need rds_superuser on RDS; a CREATEROLE master cannot make
    //     them here, so the test's hidden superuser stands in for rds_superuser in this one step.
    await adminSqlProvider().create!({ sql: auditTrailSql(), connection: rds.rootUrl });
    // What the trail's SQL gives the administrator that runs it (GRANT nb_audit TO CURRENT_USER): the
    // master, which then grants on the trail's objects like on any other.
    await sql(rds.rootUrl, [`GRANT nb_audit TO ${ADMIN_USER}`]);
    await apply(partitionMaintenanceBundle());
    // 5. Table and function grants and default privileges, then 6. the pg_cron schedule as the jobs' role.
    await sql(rds.adminUrl, [...GRANTS.filter((g) => g.objectType === "table" || g.objectType === "function").map(grantSql), ...DEFAULT_PRIVILEGES.map(defaultPrivilegeSql)]);
    await adminSqlProvider().create!({ sql: maintenanceScheduleSql(), connection: as(JOB_ROLE), runAs: JOB_ROLE });
  });

  after(async function () {
    await rds?.stop();
  });

  it("converges a restored instance's existing roles and schema as the master user (aws.restoreFrom), changing only what the model says", async function () {
    // What the layer runs on an RDS instance restored from another stack's backups: the roles and
    // the schema are there already (created in before()), and the master may not name SUPERUSER,
    // REPLICATION or BYPASSRLS. Run twice: idempotent.
    const specs = ROLES.filter((r) => r.name !== "nb_replicator");
    const newPasswords = Object.fromEntries(specs.filter((r) => r.login).map((r) => [r.name, randomBytes(12).toString("hex")]));
    const converge = specs.map((r) => roleSql(r, r.login ? stableScramVerifier(r.name, newPasswords[r.name]) : undefined, undefined, { bySuperuser: false }));
    for (let i = 0; i < 2; i++) await sql(rds.adminUrl, [...converge, restoredSchemaSql()]);
    try {
      // This stack's passwords now log in; nothing gained an attribute only a superuser gives.
      expect(await query(rds.url("nb_app", newPasswords.nb_app), "SELECT current_user AS u")).to.deep.equal([{ u: "nb_app" }]);
      const attrs = await query<{ n: number }>(
        rds.rootUrl,
        `SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY($1) AND (rolsuper OR rolreplication OR rolbypassrls OR rolcreaterole OR rolcreatedb)`,
        [specs.map((r) => r.name)],
      );
      expect(attrs).to.deep.equal([{ n: 0 }]);
      expect(await query(rds.rootUrl, "SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'neuralblitz'")).to.deep.equal([{ owner: "nb_owner" }]);
    } finally {
      // The other tests log in with the passwords of before().
      await sql(rds.adminUrl, specs.filter((r) => r.login).map((r) => `ALTER ROLE ${r.name} PASSWORD '${stableScramVerifier(r.name, passwords[r.name])}'`));
    }
  });

  it("gives the administrator RDS's rights only: no superuser, no pg_authid", async function () {
    const [me] = await query<{ rolsuper: boolean; rolcreaterole: boolean; owner: boolean }>(
      rds.adminUrl,
      "SELECT rolsuper, rolcreaterole, pg_has_role(current_user, 'nb_owner', 'MEMBER') AS owner FROM pg_roles WHERE rolname = current_user",
    );
    expect(me).to.deep.equal({ rolsuper: false, rolcreaterole: true, owner: true });
    expect(await rejection(query(rds.adminUrl, "SELECT rolpassword FROM pg_authid"))).to.match(/permission denied/);
  });

  it("accepts only TLS, verified against the server's CA and name (verify-full)", async function () {
    const plain = rds.adminUrl.replace(/\?.*$/, "");
    expect(await rejection(query(plain, "SELECT 1"))).to.match(/no pg_hba.conf entry.*no encryption/);
    // What every client got before: sslmode=require is verify-full to node-postgres, against Node's CA store.
    expect(await rejection(query(`${plain}?sslmode=require`, "SELECT 1"))).to.match(/self-signed certificate|unable to verify|certificate/);
    // The RDS bundle does not vouch for this server: verification is real.
    expect(await rejection(query(`${plain}?sslmode=verify-full&sslrootcert=${encodeURIComponent(RDS_CA_FILE)}`, "SELECT 1"))).to.match(/self-signed certificate|unable to verify|certificate/);
    const [tls] = await query<{ ssl: boolean }>(rds.adminUrl, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    expect(tls.ssl).to.equal(true);
  });

  it("ships the Amazon RDS CA bundle as the pinned package has it", function () {
    expect(fs.readFileSync(RDS_CA_FILE, "utf8")).to.equal(packagedRdsCaBundle());
    expect(packagedRdsCaBundle().match(/BEGIN CERTIFICATE/g)!.length).to.be.greaterThan(20);
  });

  it("hands the database to nb_owner and creates every table of the model", async function () {
    const [db] = await query<{ owner: string }>(rds.adminUrl, "SELECT pg_get_userbyid(datdba)::text AS owner FROM pg_database WHERE datname = current_database()");
    expect(db.owner).to.equal("nb_owner");
    const tables = await query<{ name: string; owner: string }>(
      rds.adminUrl,
      "SELECT c.relname::text AS name, pg_get_userbyid(c.relowner)::text AS owner FROM pg_class c WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    );
    expect(tables.map((t) => t.name)).to.include.members(TABLES.map((t) => t.name));
    // The audit trail (its log, seals, head and archives) is nb_audit's; everything else nb_owner's.
    const trail = new Set(["golden_dag_audit", "golden_dag_seals", "golden_dag_head", "golden_dag_archives"]);
    for (const t of tables) expect(t.owner, t.name).to.equal(trail.has(t.name) ? "nb_audit" : "nb_owner");
  });

  it("holds every grant of the privilege model", async function () {
    const missing: string[] = [];
    for (const g of GRANTS) {
      for (const p of g.privileges) {
        const check =
          g.objectType === "database" ? "has_database_privilege($1, $2, $3)"
          : g.objectType === "schema" ? "has_schema_privilege($1, $2, $3)"
          : g.objectType === "table" ? "has_table_privilege($1, 'neuralblitz.' || $2, $3)"
          : "has_function_privilege($1, 'neuralblitz.' || $2, $3)";
        const [row] = await query<{ ok: boolean }>(rds.adminUrl, `SELECT ${check} AS ok`, [g.role, g.object, p]);
        if (!row.ok) missing.push(`${p} on ${g.objectType} ${g.object} to ${g.role}`);
      }
    }
    expect(missing).to.deep.equal([]);
    const [pub] = await query<{ connect: boolean }>(rds.adminUrl, "SELECT has_database_privilege('public', current_database(), 'CONNECT') AS connect");
    expect(pub.connect).to.equal(false);
  });

  it("schedules maintenance and the audit sealer in pg_cron as nb_migrator, which a non-superuser cannot do for another role", async function () {
    const jobs = await query<{ jobname: string; schedule: string; command: string; username: string; database: string }>(
      rds.rootUrl,
      "SELECT jobname::text, schedule::text, command::text, username::text, database::text FROM cron.job ORDER BY jobname",
    );
    expect(jobs).to.deep.equal(
      SCHEDULED_JOBS.map((j) => ({ jobname: j.name, schedule: j.schedule, command: j.command, username: JOB_ROLE, database: DATABASE })).sort((a, b) => a.jobname.localeCompare(b.jobname)),
    );
    // The old way: the master user scheduling for nb_migrator. pg_cron refuses with XX000, which no
    // `WHEN insufficient_privilege` catches: it would have rolled the whole administrator step back.
    const err = await query(rds.adminUrl, `SELECT cron.schedule_in_database('x', '* * * * *', 'SELECT 1', '${DATABASE}', 'nb_migrator')`).then(
      () => undefined,
      (e: { code?: string; message: string }) => e,
    );
    expect(err, "scheduling for another role must fail").to.not.equal(undefined);
    expect(err!.code).to.equal("XX000");
    // Scheduling again (a later deploy) updates the jobs in place.
    await adminSqlProvider().update!("id", { checksum: "" }, { sql: maintenanceScheduleSql(), connection: as(JOB_ROLE), runAs: JOB_ROLE });
    expect((await query(rds.rootUrl, "SELECT 1 FROM cron.job")).length).to.equal(SCHEDULED_JOBS.length);
  });

  it("fails scheduling with what to do, never silently, where pg_cron is not usable", async function () {
    const [{ exists }] = await query<{ exists: boolean }>(rds.rootUrl, "SELECT to_regnamespace('cron') IS NOT NULL AS exists");
    expect(exists).to.equal(true);
    // nb_app has no USAGE on schema cron: the same SQL as it fails, naming the cause and the fix.
    const message = await rejection(adminSqlProvider().create!({ sql: maintenanceScheduleSql(), connection: as("nb_app"), runAs: "nb_app" }));
    expect(message).to.include("must be scheduled by nb_migrator").and.include("pulumi up again");
    const revoked = await rejection(
      (async () => {
        await sql(rds.adminUrl, [`REVOKE USAGE ON SCHEMA cron FROM ${JOB_ROLE}`]);
        try {
          await adminSqlProvider().create!({ sql: maintenanceScheduleSql(), connection: as(JOB_ROLE), runAs: JOB_ROLE });
        } finally {
          await sql(rds.adminUrl, [`GRANT USAGE ON SCHEMA cron TO ${JOB_ROLE}`]);
        }
      })(),
    );
    expect(revoked).to.include("pg_cron is not usable by nb_migrator").and.include("cronAccessSql");
  });

  it("runs every scheduled job's command as nb_migrator over TLS", async function () {
    for (const job of SCHEDULED_JOBS) await query(as(JOB_ROLE), job.command);
    const [{ n }] = await query<{ n: number }>(as(JOB_ROLE), "SELECT count(*)::int AS n FROM neuralblitz.maintenance_runs WHERE source = 'scheduler'");
    expect(n).to.be.greaterThan(0);
  });

  describe("through a pooler with its auth file and TLS on both sides", function () {
    before(async function () {
      await rds.startPooler(passwords.nb_pgbouncer, { nb_app: passwords.nb_app, nb_auditor: passwords.nb_auditor });
    });

    it("logs the pooled roles in over verify-full and reaches the server over TLS", async function () {
      const [row] = await query<{ u: string; ssl: boolean }>(
        rds.viaPooler("nb_app", passwords.nb_app),
        "SELECT current_user::text AS u, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl",
      );
      expect(row).to.deep.equal({ u: "nb_app", ssl: true });
      const [aud] = await query<{ n: number }>(rds.viaPooler("nb_auditor", passwords.nb_auditor), "SELECT count(*)::int AS n FROM neuralblitz.golden_dag_audit");
      expect(aud.n).to.be.a("number");
    });

    it("refuses clients without TLS and logins it does not list", async function () {
      const plain = rds.viaPooler("nb_app", passwords.nb_app).replace(/\?.*$/, "");
      expect(await rejection(query(plain, "SELECT 1"))).to.match(/SSL required|ssl|server does not support SSL|Connection terminated/i);
      expect(await rejection(query(rds.viaPooler("nb_readonly", passwords.nb_readonly), "SELECT 1"))).to.match(/no such user|authentication/);
      expect(await rejection(query(rds.viaPooler(ADMIN_USER, rds.adminPassword), "SELECT 1"))).to.match(/no such user|authentication/);
    });
  });
});
