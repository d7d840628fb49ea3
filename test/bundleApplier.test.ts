// The bundle applier against a real PostgreSQL: one local stack (no replicas) for the file, a fresh
// database per test so each starts without a ledger.
import { expect } from "chai";
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { version as TOOL_VERSION } from "../package.json";
import { DEPLOY_APPLICATION_NAME, applyBundles, planDeploy } from "../infra/bundles/applier";
import { loadCatalog } from "../infra/bundles/catalog";
import { partitionMaintenanceBundle } from "../infra/database/partitionMaintenance";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { addFixture, fixtureBundleDir, freshDatabase, historyNames, ledgerRows, onDatabase, relationExists } from "./bundleHelpers";
import { query, rejection, uniqueStack } from "./helpers";

/** OIDs of every object in the project's schemas (neuralblitz, neuralblitz_*) and of every extension. */
async function objectIds(url: string): Promise<string[]> {
  const rows = await query<{ o: string }>(
    url,
    `WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = 'neuralblitz' OR nspname LIKE 'neuralblitz\\_%')
     SELECT 'class ' || c.relname || ' ' || c.oid AS o FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns)
     UNION ALL SELECT 'proc ' || p.proname || ' ' || p.oid FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns)
     UNION ALL SELECT 'type ' || t.typname || ' ' || t.oid FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM ns)
     UNION ALL SELECT 'extension ' || e.extname || ' ' || e.oid FROM pg_extension e
     ORDER BY 1`,
  );
  return rows.map((r) => r.o);
}

describe("SQL bundle applier", () => {
  let outputs: LocalStackOutputs;
  let databases = 0;
  const newDatabase = () => freshDatabase(outputs, `bundles_${++databases}`);

  before(async () => {
    ({ outputs } = await up({ stack: uniqueStack("bundles"), replicas: 0, bundles: false }));
  });

  describe("through nbdb up, on the stack's own database", () => {
    it("applies the repository's bundles after the topology is up, objects owned by nb_owner (the audit trail's by nb_audit)", async () => {
      const catalog = loadCatalog();
      const res = await up({ stack: outputs.stack });
      // The repository's bundles, then the partition policy's generated one (infra/database/partitionMaintenance.ts).
      expect(res.changes.filter((c) => c.startsWith("applied "))).to.deep.equal([...catalog, partitionMaintenanceBundle()].map((b) => `applied ${b.kind} bundle ${b.name}`));
      const url = outputs.connections.migrator;
      const rows = await ledgerRows(url);
      expect(rows.map((r) => r.name).sort()).to.deep.equal([...catalog, partitionMaintenanceBundle()].map((b) => b.name).sort());
      for (const b of catalog) {
        expect(rows.find((r) => r.name === b.name)).to.include({ kind: b.kind, checksum: b.checksum, applied_by: "nb_migrator", tool_version: TOOL_VERSION });
      }
      const notOwned = await query(
        url,
        `SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'neuralblitz'::regnamespace
           AND c.relowner <> (CASE WHEN c.relname ~ '^golden_dag_' THEN 'nb_audit' ELSE 'nb_owner' END)::regrole
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')`,
      );
      expect(notOwned).to.deep.equal([]);
      const [pgcrypto] = await query(url, "SELECT extowner::regrole::text AS owner FROM pg_extension WHERE extname = 'pgcrypto'");
      expect(pgcrypto).to.deep.equal({ owner: "nb_owner" });
    });

    it("changes nothing on a second up: same ledger rows, same object OIDs, well under a second", async () => {
      const url = outputs.connections.migrator;
      const [ledgerBefore, oidsBefore] = [await ledgerRows(url), await objectIds(url)];
      const started = Date.now();
      const res = await up({ stack: outputs.stack });
      const elapsed = Date.now() - started;
      expect(res.changes).to.deep.equal([]);
      expect(elapsed).to.be.lessThan(1000);
      expect(await ledgerRows(url)).to.deep.equal(ledgerBefore);
      expect(await objectIds(url)).to.deep.equal(oidsBefore);
      expect((await planDeploy({ url }, loadCatalog())).every((e) => e.status === "unchanged")).to.equal(true);
    });
  });

  it("rolls a failing bundle back whole, leaves the ledger unchanged and names file, line and column", async () => {
    const url = await newDatabase();
    const dir = fixtureBundleDir("rows");
    await applyBundles({ url }, loadCatalog(dir));
    const before = await ledgerRows(url);
    addFixture(dir, "failing");
    const message = await rejection(applyBundles({ url }, loadCatalog(dir)));
    expect(message).to.match(/V910__failing\.sql:7:59: type "no_such_type" does not exist \(SQLSTATE 42704\)/);
    expect(message).to.include("rolled back as a whole and the ledger is unchanged");
    expect(await relationExists(url, "neuralblitz.fixture_before_error")).to.equal(false);
    expect(await ledgerRows(url)).to.deep.equal(before);
  });

  it("names the failing statement's line when PostgreSQL reports no position", async () => {
    const url = await newDatabase();
    const message = await rejection(applyBundles({ url }, loadCatalog(fixtureBundleDir("duplicate"))));
    expect(message).to.match(/V900__duplicate\.sql:6:1: in the statement starting here: relation "fixture_twice" already exists \(SQLSTATE 42P07\)/);
    expect(await relationExists(url, "neuralblitz.fixture_twice")).to.equal(false);
    expect((await ledgerRows(url)).map((r) => r.name)).to.deep.equal(["V001__bundle_ledger"]);
  });

  it("refuses a migration edited after it was applied, with both checksums, and applies nothing after it", async () => {
    const url = await newDatabase();
    const dir = fixtureBundleDir("rows");
    await applyBundles({ url }, loadCatalog(dir));
    const applied = loadCatalog(dir).find((b) => b.name === "V900__fixture_rows")!;
    fs.appendFileSync(path.join(dir, "migrations", "V900__fixture_rows.sql"), "ALTER TABLE neuralblitz.fixture_rows ADD COLUMN edited boolean;\n");
    addFixture(dir, "concurrently");
    const edited = loadCatalog(dir).find((b) => b.name === "V900__fixture_rows")!;

    const plan = await planDeploy({ url }, loadCatalog(dir));
    expect(plan.map((e) => [e.bundle.name, e.status])).to.deep.equal([
      ["V001__bundle_ledger", "unchanged"],
      ["V900__fixture_rows", "refused"],
      ["V901__fixture_rows_label_index", "new"],
    ]);
    const message = await rejection(applyBundles({ url }, loadCatalog(dir)));
    expect(message).to.include(`applied checksum ${applied.checksum}, file checksum ${edited.checksum}`);
    expect(message).to.include("put the change in a new migration, V902__<name>.sql").and.include("Nothing was applied.");
    expect((await ledgerRows(url)).map((r) => r.name)).to.deep.equal(["V001__bundle_ledger", "V900__fixture_rows"]);
    expect(await relationExists(url, "neuralblitz.fixture_rows_label")).to.equal(false);
  });

  it("re-applies a changed repeatable bundle and keeps the history of both applications", async () => {
    const url = await newDatabase();
    const dir = fixtureBundleDir("answer-41");
    await applyBundles({ url }, loadCatalog(dir));
    expect(await query(url, "SELECT answer FROM neuralblitz.fixture_answer")).to.deep.equal([{ answer: 41 }]);

    addFixture(dir, "answer-42");
    const catalog = loadCatalog(dir);
    expect((await planDeploy({ url }, catalog)).map((e) => e.status)).to.deep.equal(["unchanged", "changed"]);
    const applied = await applyBundles({ url }, catalog);
    expect(applied.map((a) => [a.name, a.status])).to.deep.equal([["R900__fixture_answer", "changed"]]);
    expect(await query(url, "SELECT answer FROM neuralblitz.fixture_answer")).to.deep.equal([{ answer: 42 }]);
    expect((await ledgerRows(url)).find((r) => r.name === "R900__fixture_answer")!.checksum).to.equal(catalog[1].checksum);
    expect(await historyNames(url)).to.deep.equal(["V001__bundle_ledger", "R900__fixture_answer", "R900__fixture_answer"]);
    expect(await applyBundles({ url }, catalog)).to.deep.equal([]);
  });

  it("serializes concurrent deploys: the second waits, naming the first, then finds nothing to do", async () => {
    const url = await newDatabase();
    const catalog = loadCatalog(fixtureBundleDir("slow"));
    const slowUrl = `${url}${url.includes("?") ? "&" : "?"}options=${encodeURIComponent("-c nbdb_test.sleep_seconds=1")}`;
    const waits: string[] = [];
    const first = applyBundles({ url: slowUrl }, catalog);
    await new Promise((r) => setTimeout(r, 300));
    const second = applyBundles({ url, log: (line) => waits.push(line) }, catalog);
    const [a, b] = await Promise.all([first, second]);
    expect(a.map((x) => x.name)).to.deep.equal(["V001__bundle_ledger", "V900__slow"]);
    expect(b).to.deep.equal([]);
    expect(waits[0]).to.match(new RegExp(`waiting for another deploy to finish: pid \\d+ \\(application '${DEPLOY_APPLICATION_NAME}', user nb_migrator`));
    expect(await historyNames(url)).to.deep.equal(["V001__bundle_ledger", "V900__slow"]);
  });

  it("gives up waiting for the deploy lock after its timeout, naming the holder and how to end it", async () => {
    const url = await newDatabase();
    const holder = new Client({ connectionString: url, application_name: "stuck-deploy" });
    await holder.connect();
    try {
      const [{ pid }] = (await holder.query("SELECT pg_backend_pid() AS pid, pg_advisory_lock(1851941986, 1)")).rows;
      const message = await rejection(applyBundles({ url, deployLockTimeoutMs: 1000 }, loadCatalog(fixtureBundleDir())));
      expect(message).to.include(`pid ${pid} (application 'stuck-deploy'`).and.include(`SELECT pg_terminate_backend(${pid})`);
      expect(await ledgerRows(url)).to.deep.equal([]);
    } finally {
      await holder.end();
    }
  });

  describe("an interrupted deploy", () => {
    async function deployBackend(url: string): Promise<number | undefined> {
      const rows = await query<{ pid: number }>(
        onDatabase(outputs.connections.admin, new URL(url).pathname.slice(1)),
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database() AND state = 'active' AND query LIKE '%pg_sleep%'",
        [DEPLOY_APPLICATION_NAME],
      );
      return rows[0]?.pid;
    }

    async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await fn();
        if (v !== undefined) return v;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    it("leaves the database as before the bundle when the deploy process is killed, and the next run completes", async () => {
      const url = await newDatabase();
      const dir = fixtureBundleDir("slow");
      const slowUrl = `${url}${url.includes("?") ? "&" : "?"}options=${encodeURIComponent("-c nbdb_test.sleep_seconds=120")}`;
      const child: ChildProcess = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "fixtures", "applyBundles.ts"), slowUrl, dir], {
        cwd: path.join(__dirname, ".."),
        stdio: "ignore",
      });
      try {
        await waitFor("the deploy to be inside the slow bundle", () => deployBackend(url), 60_000);
      } finally {
        child.kill("SIGKILL");
      }
      // The server notices the dead client (client_connection_check_interval) and rolls back.
      await waitFor("the killed deploy's session to end", async () => ((await deployBackend(url)) === undefined ? true : undefined));
      expect(await relationExists(url, "neuralblitz.fixture_slow")).to.equal(false);
      expect((await ledgerRows(url)).map((r) => r.name)).to.deep.equal(["V001__bundle_ledger"]);

      const applied = await applyBundles({ url }, loadCatalog(dir));
      expect(applied.map((a) => a.name)).to.deep.equal(["V900__slow"]);
      expect(await relationExists(url, "neuralblitz.fixture_slow")).to.equal(true);
    });

    it("reports a connection cut mid-bundle as an interruption to re-run, with the bundle rolled back", async () => {
      const url = await newDatabase();
      const dir = fixtureBundleDir("slow");
      const slowUrl = `${url}${url.includes("?") ? "&" : "?"}options=${encodeURIComponent("-c nbdb_test.sleep_seconds=120")}`;
      const deploy = rejection(applyBundles({ url: slowUrl }, loadCatalog(dir)));
      const pid = await waitFor("the deploy to be inside the slow bundle", () => deployBackend(url));
      await query(outputs.connections.admin, "SELECT pg_terminate_backend($1)", [pid]);
      const message = await deploy;
      expect(message).to.match(/V900__slow\.sql: the deploy was interrupted while applying it \(terminating connection due to administrator command\)/);
      expect(message).to.include("Run the deploy again");
      expect(await relationExists(url, "neuralblitz.fixture_slow")).to.equal(false);
      expect((await applyBundles({ url }, loadCatalog(dir))).map((a) => a.name)).to.deep.equal(["V900__slow"]);
    });
  });

  describe("a bundle declared -- nbdb:no-transaction", () => {
    it("runs outside a transaction (CREATE INDEX CONCURRENTLY) and is recorded once it succeeded", async () => {
      const url = await newDatabase();
      const applied = await applyBundles({ url }, loadCatalog(fixtureBundleDir("rows", "concurrently")));
      expect(applied.map((a) => a.name)).to.deep.equal(["V001__bundle_ledger", "V900__fixture_rows", "V901__fixture_rows_label_index"]);
      const [index] = await query(url, "SELECT i.indisvalid AS valid, c.relowner::regrole::text AS owner FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.oid = 'neuralblitz.fixture_rows_label'::regclass");
      expect(index).to.deep.equal({ valid: true, owner: "nb_owner" });
      expect((await ledgerRows(url)).map((r) => r.name)).to.include("V901__fixture_rows_label_index");
    });

    it("is not recorded when a statement fails, and the error names file, line and column", async () => {
      const url = await newDatabase();
      const message = await rejection(applyBundles({ url }, loadCatalog(fixtureBundleDir("rows", "concurrently-broken"))));
      expect(message).to.match(/V902__broken_concurrent_index\.sql:5:1: in the statement starting here: column "no_such_column" does not exist/);
      expect(message).to.include("ran outside a transaction");
      expect((await ledgerRows(url)).map((r) => r.name)).to.deep.equal(["V001__bundle_ledger", "V900__fixture_rows"]);
    });
  });
});
