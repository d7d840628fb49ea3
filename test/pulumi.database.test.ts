// The database layer of the Pulumi program (infra/database/) under the SDK's mocks, for dev (Docker),
// prod (AWS) and a review stack: where its provider connects, the roles, grants and bundles it
// declares and in which order; and, against a real local stack, that its Grant resources add up to
// exactly the privileges the local stack's SQL renderer applied, and that its administrator step does
// on a real server what the platforms need.
import { expect } from "chai";
import { createHash } from "crypto";
import { Client } from "pg";
import * as pulumi from "@pulumi/pulumi";
import { loadCatalog } from "../infra/bundles/catalog";
import { auditTrailSql } from "../infra/topology/auditTrail";
import { adminSetupSql } from "../infra/database/adminSetup";
import { DATABASE_PLAN, PLAN_STEP_IDS, PlanStepId } from "../infra/database/plan";
import { PARTITION_MAINTENANCE_BUNDLE, partitionMaintenanceBundle, partitionPolicySql } from "../infra/database/partitionMaintenance";
import { partitionPolicies } from "../schema/tables";
import { AdminSqlOutputs, adminSqlProvider } from "../infra/dynamic/adminSql";
import { pulumiCaFile } from "../infra/stack";
import { ROLE_TIMEOUT_DEFAULTS } from "../schema/roles";
import { StackOutputs } from "../infra/outputs";
import { INIT_SCRIPT_ROLES } from "../infra/platform/dockerPrimaryInit";
import { AUTH_FUNCTION } from "../infra/topology/pgbouncerAuth";
import { GRANTS, PrivilegeTriple, tripleKey, triplesOf } from "../schema/privileges";
import { ROLES } from "../schema/roles";
import { liveGrants } from "../scripts/local/grants";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { onDatabase } from "./bundleHelpers";
import { query, uniqueStack } from "./helpers";
import { Config, DEV, PROD, Registration, Run, deployed, named, of, value } from "./pulumiMocks";

const PROVIDER = "pulumi:providers:postgresql";
const ROLE = "postgresql:index/role:Role";
const SCHEMA_RESOURCE = "postgresql:index/schema:Schema";
const GRANT = "postgresql:index/grant:Grant";
const DEFAULT_PRIVILEGES = "postgresql:index/defaultPrivileges:DefaultPrivileges";
const SQL_BUNDLE = "pulumi-nodejs:dynamic/neuralblitz:SqlBundle";
const ADMIN_SQL = "pulumi-nodejs:dynamic/neuralblitz:AdminSql";

/** The provider names functions without their argument lists (infra/database/grants.ts); compare on that. */
function providerTriple(t: PrivilegeTriple): string {
  return tripleKey({ ...t, object: t.objectType === "function" ? t.object.replace(/\(.*$/, "") : t.object });
}

/** (role, object, privilege) as the Grant resources declare them; the PUBLIC revoke adds none. */
function declaredTriples(run: Run): string[] {
  return of(run, GRANT).flatMap((g) =>
    (g.inputs.privileges as string[]).map((privilege) =>
      tripleKey({ role: g.inputs.role, objectType: g.inputs.objectType, object: g.inputs.objects?.[0] ?? g.inputs.schema ?? g.inputs.database, privilege } as PrivilegeTriple),
    ),
  );
}

/** Every resource `r` waits for, directly or through others. */
function waitsFor(run: Run, r: Registration): Set<string> {
  const byUrn = new Map(run.registrations.map((x) => [x.urn, x]));
  const seen = new Set<string>();
  const visit = (urn: string) => {
    if (seen.has(urn)) return;
    seen.add(urn);
    byUrn.get(urn)?.dependencies.forEach(visit);
  };
  r.dependencies.forEach(visit);
  return seen;
}

const SCENARIOS: [string, Config, "docker" | "aws"][] = [
  ["dev", DEV, "docker"],
  ["prod", PROD, "aws"],
  ["review-42", {}, "docker"],
];

describe("database layer (mocks)", function () {
  this.timeout(60_000);
  after(() => pulumi.runtime.setAllConfig({}));

  for (const [stack, config, platform] of SCENARIOS) {
    describe(`${stack} (${platform})`, () => {
      let run: Run & { outputs: StackOutputs };
      before(async () => {
        run = await deployed(stack, config);
      });

      it("connects its provider to the primary, never the pooler, with the admin login as a secret; superuser only on Docker", async () => {
        const primary = await value(run.outputs.primary);
        const pooler = await value(run.outputs.pooler);
        const provider = named(run, PROVIDER, "nbdb-postgresql");
        // A provider's configuration reaches the engine as strings.
        expect(provider.inputs).to.include({ host: primary.host, port: String(primary.port), username: "postgres", database: "neuralblitz" });
        expect(`${provider.inputs.host}:${provider.inputs.port}`).not.to.equal(`${pooler.host}:${pooler.port}`);
        expect(provider.inputs.host).not.to.include(":");
        expect(provider.inputs.superuser).to.equal(String(platform === "docker"));
        // verify-full everywhere: Docker against the stack's own CA, RDS against the Amazon RDS CA bundle.
        expect(provider.inputs.sslmode).to.equal("verify-full");
        if (platform === "docker") expect(provider.inputs.sslrootcert).to.equal(pulumiCaFile(stack));
        expect(provider.secretInputs).to.include.members(["password", "host"]);
        const postgresResources = run.registrations.filter((r) => r.type.startsWith("postgresql:"));
        expect(postgresResources.length).to.be.greaterThan(0);
        for (const r of postgresResources) expect(r.provider, r.name).to.equal(`${provider.urn}::nbdb-postgresql-id`);
      });

      it("declares a Role for every role the platform does not create, login roles with secret SCRAM verifiers, none privileged", () => {
        const platformRoles: readonly string[] = platform === "docker" ? INIT_SCRIPT_ROLES : ["nb_replicator"];
        const roles = of(run, ROLE);
        expect(roles.map((r) => r.inputs.name)).to.have.members(ROLES.map((r) => r.name).filter((r) => !platformRoles.includes(r)));
        for (const r of roles) {
          const spec = ROLES.find((s) => s.name === r.inputs.name)!;
          expect(r.inputs, spec.name).to.include({ login: spec.login, superuser: false, createRole: false, createDatabase: false, bypassRowLevelSecurity: false });
          if (spec.login) {
            expect(r.secretInputs, spec.name).to.include("password");
            expect(r.inputs.password).to.match(/^SCRAM-SHA-256\$4096:/);
            expect(r.inputs.password).not.to.include(`pw-nbdb-${spec.name}`);
          } else expect(r.inputs.password, spec.name).to.equal(undefined);
        }
        const migrator = roles.find((r) => r.inputs.name === "nb_migrator")!;
        expect(migrator.inputs.roles).to.deep.equal(["nb_owner"]);
        expect(migrator.dependencies).to.include(roles.find((r) => r.inputs.name === "nb_owner")!.urn);
      });

      it("takes the database over and installs the pooler's lookup as the administrator, before the schema", () => {
        const setup = named(run, ADMIN_SQL, "nbdb-admin-setup");
        expect(setup.inputs.sql).to.include("ALTER DATABASE neuralblitz OWNER TO nb_owner").and.include(`CREATE OR REPLACE FUNCTION ${AUTH_FUNCTION}`);
        expect(setup.secretInputs).to.include("connection");
        expect(setup.inputs.connection).to.match(/^postgresql:\/\/postgres:pw-nbdb-admin@/);
        const schema = named(run, SCHEMA_RESOURCE, "nbdb-schema");
        expect(schema.inputs).to.include({ name: "neuralblitz", database: "neuralblitz", owner: "nb_owner" });
        expect(schema.dependencies).to.include(setup.urn);
      });

      it("sets the role-level timeouts of schema/roles.ts as the administrator, after the roles, and removes any other role setting", () => {
        const settings = named(run, ADMIN_SQL, "nbdb-role-settings");
        const t = ROLE_TIMEOUT_DEFAULTS.nb_app;
        expect(settings.inputs.sql)
          .to.include(`ALTER ROLE nb_app SET statement_timeout = '${t.statementMs}ms';`)
          .and.include(`ALTER ROLE nb_app SET lock_timeout = '${t.lockMs}ms';`)
          .and.include(`ALTER ROLE nb_app SET idle_in_transaction_session_timeout = '${t.idleInTransactionMs}ms';`)
          .and.include("ALTER ROLE nb_app RESET ALL;")
          .and.include("ALTER ROLE nb_app IN DATABASE %I RESET ALL");
        const roles = of(run, "postgresql:index/role:Role");
        for (const r of roles) expect(settings.dependencies).to.include(r.urn);
        const app = roles.find((r) => r.inputs.name === "nb_app")!;
        expect(app.inputs).to.include({ connectionLimit: 60, validUntil: "infinity" });
      });

      it("lists every Grant's privileges explicitly, never ALL, and grants nothing to PUBLIC (only the documented revoke names it)", () => {
        const grants = of(run, GRANT);
        expect(grants).to.have.length(GRANTS.length + 1);
        for (const g of grants) {
          expect(g.inputs.privileges, g.name).to.be.an("array");
          expect(g.inputs.privileges, g.name).not.to.include("ALL");
          if (g.inputs.objectType === "table" || g.inputs.objectType === "function") expect(g.inputs.objects, g.name).to.have.length(1);
        }
        const toPublic = grants.filter((g) => g.inputs.role.toLowerCase() === "public");
        expect(toPublic.map((g) => [g.name, g.inputs.objectType, g.inputs.privileges])).to.deep.equal([["nbdb-grant-revoke-public-on-database-neuralblitz", "database", []]]);
        for (const d of of(run, DEFAULT_PRIVILEGES)) {
          expect(d.inputs).to.include({ owner: "nb_owner", schema: "neuralblitz" });
          expect(d.inputs.privileges).not.to.include("ALL");
        }
      });

      it("names each grant for who gets privileges on which object, the same on every stack", async () => {
        const names = of(run, GRANT).map((g) => g.name);
        expect(new Set(names).size).to.equal(names.length);
        expect(names).to.include.members([
          "nbdb-grant-nb-app-on-table-users",
          "nbdb-grant-nb-readonly-on-function-current-user-id",
          "nbdb-grant-nb-migrator-on-database-neuralblitz",
          "nbdb-grant-nb-auditor-on-schema-neuralblitz",
        ]);
        const again = await deployed(stack, config);
        expect(of(again, GRANT).map((g) => g.name)).to.deep.equal(names);
      });

      it("declares exactly the (role, object, privilege) triples the SQL renderer applies", () => {
        expect(declaredTriples(run).sort()).to.deep.equal(triplesOf(GRANTS).map(providerTriple).sort());
      });

      it("applies the bundles after the roles, the schema and CONNECT, then partition maintenance, then grants on their objects", () => {
        const bundles = of(run, SQL_BUNDLE);
        expect(bundles.map((b) => b.inputs.bundleName)).to.deep.equal([...loadCatalog().map((b) => b.name), PARTITION_MAINTENANCE_BUNDLE]);
        const first = waitsFor(run, bundles[0]);
        for (const r of [...of(run, ROLE), named(run, SCHEMA_RESOURCE, "nbdb-schema"), named(run, GRANT, "nbdb-grant-nb-migrator-on-database-neuralblitz")]) {
          expect(first.has(r.urn), r.name).to.equal(true);
        }
        // The bundles of sql/ one after the other; the policy bundle after them, through the audit trail's step.
        bundles.slice(1, -1).forEach((b, i) => expect(b.dependencies).to.include(bundles[i].urn));
        expect(waitsFor(run, bundles[bundles.length - 1]).has(bundles[bundles.length - 2].urn)).to.equal(true);
        expect(bundles.every((b) => b.secretInputs.includes("connection"))).to.equal(true);
        expect(bundles[0].inputs.connection).to.match(/^postgresql:\/\/nb_migrator:pw-nbdb-nb_migrator@/);
        const last = bundles[bundles.length - 1];
        for (const g of [...of(run, GRANT).filter((g) => g.inputs.objects), ...of(run, DEFAULT_PRIVILEGES)]) expect(g.dependencies, g.name).to.include(last.urn);
        for (const g of of(run, GRANT).filter((g) => !g.inputs.objects)) expect(waitsFor(run, g).has(bundles[0].urn), g.name).to.equal(false);
      });

      it("registers the database layer step by step in the database plan's order: every resource of a step waits for every resource of the step before", () => {
        const policy = (b: Registration) => b.inputs.bundleName === PARTITION_MAINTENANCE_BUNDLE;
        const adminSql = (...names: string[]) => of(run, ADMIN_SQL).filter((r) => names.includes(r.name));
        const byStep: Record<PlanStepId, Registration[]> = {
          roles: [...of(run, ROLE), ...adminSql("nbdb-platform-roles", "nbdb-rewind-grants", "nbdb-role-settings")],
          database: adminSql("nbdb-admin-setup"),
          schema: of(run, SCHEMA_RESOURCE),
          access: of(run, GRANT).filter((g) => !g.inputs.objects),
          bundles: of(run, SQL_BUNDLE).filter((b) => !policy(b)),
          auditTrail: adminSql("nbdb-audit-trail"),
          partitions: of(run, SQL_BUNDLE).filter(policy),
          grants: [...of(run, GRANT).filter((g) => g.inputs.objects), ...of(run, DEFAULT_PRIVILEGES)],
          schedule: adminSql("nbdb-schedule"),
        };
        // Every resource of the layer belongs to one step.
        const layer = run.registrations.filter((r) => [ROLE, SCHEMA_RESOURCE, GRANT, DEFAULT_PRIVILEGES, SQL_BUNDLE].includes(r.type) || (r.type === ADMIN_SQL && r.name.startsWith("nbdb-")));
        expect(Object.values(byStep).flat().map((r) => r.urn)).to.have.members(layer.map((r) => r.urn));
        // Every platform's servers preload pg_cron now (Docker: the image the program builds).
        expect(byStep.schedule.length).to.equal(1);
        const present = DATABASE_PLAN.filter((s) => byStep[s.id].length > 0);
        expect(present.map((s) => s.id)).to.deep.equal(PLAN_STEP_IDS);
        for (let i = 1; i < present.length; i++) {
          for (const later of byStep[present[i].id]) {
            const waits = waitsFor(run, later);
            for (const earlier of byStep[present[i - 1].id]) expect(waits.has(earlier.urn), `${later.name} (${present[i].id}) waits for ${earlier.name} (${present[i - 1].id})`).to.equal(true);
          }
        }
      });

      it("never runs two Grants on one object at once (the provider locks per role only): each waits for the one before it", () => {
        const objectOf = (g: Registration) => [g.inputs.objectType, g.inputs.database, g.inputs.schema ?? "", ...(g.inputs.objects ?? [])].join("|");
        const grants = of(run, GRANT);
        const byObject = new Map<string, Registration[]>();
        for (const g of grants) byObject.set(objectOf(g), [...(byObject.get(objectOf(g)) ?? []), g]);
        const shared = [...byObject.values()].filter((gs) => gs.length > 1);
        expect(shared.length, "objects granted to more than one role").to.be.greaterThan(2);
        for (const gs of shared) {
          for (let i = 0; i < gs.length; i++) {
            for (let j = i + 1; j < gs.length; j++) {
              const ordered = waitsFor(run, gs[j]).has(gs[i].urn) || waitsFor(run, gs[i]).has(gs[j].urn);
              expect(ordered, `${gs[i].name} and ${gs[j].name} may run at once`).to.equal(true);
            }
          }
        }
      });

      it(`drops the schema ${stack.startsWith("review-") ? "with CASCADE (a review database goes with its stack)" : "only with RESTRICT (dev, prod keep their objects)"}`, () => {
        expect(named(run, SCHEMA_RESOURCE, "nbdb-schema").inputs.dropCascade).to.equal(stack.startsWith("review-"));
      });

      it("installs the audit trail's trust boundary as the administrator after the bundles, before partition maintenance and the grants", () => {
        const trail = named(run, ADMIN_SQL, "nbdb-audit-trail");
        expect(trail.inputs.sql).to.equal(auditTrailSql());
        expect(trail.inputs.sql).to.include("GRANT nb_audit TO CURRENT_USER").and.include("CREATE EVENT TRIGGER golden_dag_ddl");
        expect(trail.secretInputs).to.include("connection");
        expect(trail.inputs.connection).to.match(/^postgresql:\/\/postgres:pw-nbdb-admin@/);
        const bundles = of(run, SQL_BUNDLE);
        const lastSchemaBundle = bundles.find((b) => b.inputs.bundleName === loadCatalog()[loadCatalog().length - 1].name)!;
        expect(trail.dependencies).to.include(lastSchemaBundle.urn);
        const maintenance = bundles.find((b) => b.inputs.bundleName === PARTITION_MAINTENANCE_BUNDLE)!;
        expect(maintenance.dependencies).to.include(trail.urn);
        const auditorOnTrail = named(run, GRANT, "nbdb-grant-nb-auditor-on-table-golden-dag-audit");
        expect(waitsFor(run, auditorOnTrail).has(trail.urn)).to.equal(true);
        const auditRole = of(run, ROLE).find((r) => r.inputs.name === "nb_audit")!;
        expect(auditRole.inputs).to.include({ login: false, superuser: false });
      });

      it("applies schema/tables.ts's partition policies with the stack's partitions.<table>.* overrides in the last bundle", () => {
        const maintenance = of(run, SQL_BUNDLE).find((b) => b.inputs.bundleName === PARTITION_MAINTENANCE_BUNDLE)!;
        const overrides = (config.partitions ?? {}) as Parameters<typeof partitionPolicies>[0];
        expect(maintenance.inputs.sql).to.equal(partitionMaintenanceBundle(partitionPolicies(overrides)).sql);
        for (const p of partitionPolicies(overrides)) expect(maintenance.inputs.sql).to.include(partitionPolicySql(p));
        expect(maintenance.inputs.sql).to.include("neuralblitz.run_partition_maintenance()");
      });

      it(`keeps bundles on delete ${stack.startsWith("review-") ? "nowhere (review)" : "(dev, prod)"}, and protects roles and schema only where the data is protected`, () => {
        expect(of(run, SQL_BUNDLE).every((b) => b.retainOnDelete === !stack.startsWith("review-"))).to.equal(true);
        const protectedNames = run.registrations.filter((r) => r.protect && (r.type === ROLE || r.type === SCHEMA_RESOURCE)).map((r) => r.name);
        expect(protectedNames).to.have.length(config.deletionProtection ? of(run, ROLE).length + 1 : 0);
      });
    });
  }
});

describe("database layer against a real local stack", function () {
  let out: LocalStackOutputs;
  let dev: Run;

  before(async function () {
    out = (await up({ stack: uniqueStack("pgrants"), replicas: 0 })).outputs;
    dev = await deployed("dev", DEV);
  });

  after(() => pulumi.runtime.setAllConfig({}));

  it("its Grant resources add up to exactly the privileges the local stack's SQL renderer applied", async function () {
    const client = new Client({ connectionString: out.connections.admin });
    await client.connect();
    try {
      const live = await liveGrants(client);
      expect(live.filter((t) => t.role === "PUBLIC").map(tripleKey)).to.deep.equal([]);
      expect(declaredTriples(dev).sort()).to.deep.equal(live.map(providerTriple).sort());
    } finally {
      await client.end();
    }
  });

  it("names no granted function that is overloaded, so the provider's bare function names are unambiguous", async function () {
    const names = [...new Set(GRANTS.filter((g) => g.objectType === "function").map((g) => g.object.replace(/\(.*$/, "")))];
    const rows = await query<{ proname: string; n: number }>(
      out.connections.admin,
      "SELECT proname::text, count(*)::int AS n FROM pg_proc WHERE pronamespace = 'neuralblitz'::regnamespace AND proname = ANY($1) GROUP BY proname",
      [names],
    );
    expect(rows.map((r) => [r.proname, r.n]).sort()).to.deep.equal(names.map((n) => [n, 1]).sort());
  });

  describe("the administrator step (AdminSql)", () => {
    const provider = adminSqlProvider();
    const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

    it("takes over a database an RDS-like master (CREATEROLE, CREATEDB, no superuser) created, and installs the pooler's lookup", async function () {
      const master = `nb_master_${Date.now()}`;
      await query(out.connections.admin, `CREATE ROLE ${master} LOGIN CREATEROLE CREATEDB PASSWORD 'master-pw'`);
      await query(out.connections.admin, `CREATE DATABASE ${master} OWNER ${master}`);
      const masterUrl = Object.assign(new URL(onDatabase(out.connections.admin, master)), { username: master, password: "master-pw" }).toString();
      const sql = adminSetupSql(master);
      const created = await provider.create!({ sql, connection: masterUrl });
      expect(created.outs).to.deep.equal({ checksum: sha256(sql) });
      const [db] = await query<{ owner: string; publicCreate: boolean }>(
        onDatabase(out.connections.admin, master),
        "SELECT pg_get_userbyid(datdba)::text AS owner, has_schema_privilege('public', 'public', 'CREATE') AS \"publicCreate\" FROM pg_database WHERE datname = current_database()",
      );
      expect(db).to.deep.equal({ owner: "nb_owner", publicCreate: false });
      const [fn] = await query<{ definer: boolean; config: string[]; execute: boolean; publicExecute: boolean }>(
        onDatabase(out.connections.admin, master),
        `SELECT prosecdef AS definer, proconfig AS config, has_function_privilege('nb_pgbouncer', '${AUTH_FUNCTION}(text)', 'EXECUTE') AS execute,
                has_function_privilege('nb_app', '${AUTH_FUNCTION}(text)', 'EXECUTE') AS "publicExecute"
           FROM pg_proc WHERE oid = '${AUTH_FUNCTION}(text)'::regprocedure`,
      );
      expect(fn).to.deep.equal({ definer: true, config: ["search_path=pg_catalog, pg_temp"], execute: true, publicExecute: false });
      // Idempotent: a second run (a replaced state, another stack's first up) changes nothing and does not fail.
      await provider.update!("id", created.outs as AdminSqlOutputs, { sql, connection: masterUrl });
    });

    it("runs again only when its SQL changes, not for a new connection string", async function () {
      const olds = { checksum: sha256("SELECT 1") };
      expect((await provider.diff!("id", olds, { sql: "SELECT 1", connection: "postgresql://x@rotated/neuralblitz" })).changes).to.equal(false);
      expect((await provider.diff!("id", olds, { sql: "SELECT 2", connection: "postgresql://x@h/neuralblitz" })).changes).to.equal(true);
    });

    it("serializes as a closure that captures plain strings only", async function () {
      const text = (await pulumi.runtime.serializeFunction(() => provider)).text;
      expect(text).not.to.match(/\bClient\b.*=.*require\("pg"\)|process\.binding/);
      const captured = [...text.matchAll(/with\(\{ (.*) \}\) \{/g)].flatMap((m) => m[1].split(/, (?=\w+: )/));
      for (const entry of captured) expect(entry).to.match(/^\w+: (__\w+|"[^"]*"|undefined)$/);
    });
  });
});
