// `nbdb reset` and the stack's pg_service.conf, for real: one throwaway stack without replicas
// (kept lean), connected to through psql with each service, then reset.
import { expect } from "chai";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { libpqKeywords, pgServiceFile, renderPgServiceConf, serviceName } from "../scripts/local/pgService";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, outputsFile, readOutputs, stackDir } from "../scripts/local/state";
import { findBinaries } from "../scripts/local/system";
import { loadCatalog } from "../infra/bundles/catalog";
import { newMigration } from "../scripts/ops/migration";
import { reset } from "../scripts/ops/reset";
import { StartSummary, printStartSummary } from "../scripts/ops/start";
import { query, rejection, uniqueStack } from "./helpers";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");

function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** psql with only a service name: everything else (host, port, user, password, TLS) comes from the file. */
function psqlService(serviceFile: string, service: string, sql: string) {
  const psql = path.join(findBinaries().pgBinDir, "psql");
  // No PG* variable of the test's environment may fill in what the service file should say.
  const env = Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith("PG")).map((k) => [k, undefined]));
  return run(psql, ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, `service=${service}`], { ...env, PGSERVICEFILE: serviceFile });
}

async function postmasterStart(out: LocalStackOutputs): Promise<string> {
  const [row] = await query<{ t: string }>(out.connections.admin, "SELECT pg_postmaster_start_time()::text AS t");
  return row.t;
}

describe("nbdb migration new", function () {
  function bundleDir(migrations: string[]): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-migration-"));
    fs.mkdirSync(path.join(dir, "migrations"));
    fs.mkdirSync(path.join(dir, "repeatable"));
    for (const m of migrations) fs.writeFileSync(path.join(dir, "migrations", m), "SELECT 1;\n");
    fs.writeFileSync(path.join(dir, "repeatable", "R900__view.sql"), "SELECT 1;\n");
    return dir;
  }

  it("writes the next free version above the highest, padded to three digits, with the header template the catalog accepts", () => {
    const dir = bundleDir(["V001__a.sql", "V007__b.sql"]);
    const m = newMigration("add_metric_labels", dir);
    expect(m).to.deep.equal({ file: path.join(dir, "migrations", "V008__add_metric_labels.sql"), version: 8 });
    const text = fs.readFileSync(m.file, "utf8");
    expect(text).to.match(/^-- V008__add_metric_labels: <what this migration creates or changes, in one line>\.\n-- Why: /);
    const written = loadCatalog(dir).find((b) => b.name === "V008__add_metric_labels")!;
    expect(written).to.include({ kind: "versioned", order: 8, transactional: true });
    expect(newMigration("then_this", dir).file).to.equal(path.join(dir, "migrations", "V009__then_this.sql"));
    expect(newMigration("first", bundleDir([])).file).to.match(/V001__first\.sql$/);
  });

  it("refuses a name that is not lower-case snake_case and a name taken (running it twice overwrites nothing), writing nothing", () => {
    const dir = bundleDir(["V001__a.sql", "V002__add_things.sql"]);
    const before = fs.readdirSync(path.join(dir, "migrations"));
    for (const bad of ["Add_Things", "add-things", "add__things", "_add", "add things", ""]) {
      expect(() => newMigration(bad, dir), bad).to.throw(/invalid migration name .*lower-case snake_case/);
    }
    expect(() => newMigration("add_things", dir)).to.throw(/V002__add_things\.sql already uses the name 'add_things'/);
    expect(fs.readdirSync(path.join(dir, "migrations"))).to.deep.equal(before);
    const first = newMigration("once", dir);
    fs.appendFileSync(first.file, "SELECT 2;\n");
    expect(() => newMigration("once", dir)).to.throw(/V003__once\.sql already uses the name 'once'/);
    expect(fs.readFileSync(first.file, "utf8")).to.match(/SELECT 2;\n$/);
  });

  it("is the command nbdb migration new <name> [--dir], exit code 2 on a bad name", async () => {
    const dir = bundleDir(["V012__a.sql"]);
    const ok = await run(process.execPath, [BIN, "migration", "new", "add_index", "--dir", dir]);
    expect(ok.code).to.equal(0);
    expect(ok.stdout).to.include(`wrote ${path.join(dir, "migrations", "V013__add_index.sql")} (version 13)`);
    const bad = await run(process.execPath, [BIN, "migration", "new", "AddIndex", "--dir", dir]);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/invalid migration name 'AddIndex'/);
  });
});

describe("pg_service.conf", function () {
  it("carries every parameter of a connection URL, decoded, and refuses a value a service line cannot hold", () => {
    const url = "postgresql://nb_app:p%40ss%2Fw@db.example:6432/neuralblitz?sslmode=verify-full&sslrootcert=%2Fetc%2Fnbdb%2Fca.pem&target_session_attrs=read-write&uselibpqcompat=true";
    expect(libpqKeywords(url)).to.deep.equal([
      ["host", "db.example"],
      ["port", "6432"],
      ["dbname", "neuralblitz"],
      ["user", "nb_app"],
      ["password", "p@ss/w"],
      ["sslmode", "verify-full"],
      ["sslrootcert", "/etc/nbdb/ca.pem"],
      ["target_session_attrs", "read-write"],
    ]);
    expect(() => libpqKeywords("postgresql://u:p@h:1/d?application_name=a%0Ab")).to.throw(/application_name holds a line break/);
  });
});

describe("nbdb reset and the stack's service file", function () {
  const stack = uniqueStack("reset");
  let out: LocalStackOutputs;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
  });

  it("writes pg_service.conf beside outputs.json (mode 0600) with one service per connection that psql logs in with", async function () {
    const file = pgServiceFile(stack);
    expect(path.dirname(file)).to.equal(path.dirname(outputsFile(stack)));
    expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
    const expected = { app: "nb_app", migrator: "nb_migrator", readonly: "nb_readonly", auditor: "nb_auditor", admin: "postgres" } as const;
    for (const [connection, role] of Object.entries(expected)) {
      const r = await psqlService(file, serviceName(stack, connection as keyof typeof expected), "SELECT current_user || ' ' || current_database()");
      expect(r.stderr, connection).to.equal("");
      expect(r.stdout.trim(), connection).to.equal(`${role} neuralblitz`);
    }
    // The app's service goes through the pooler, as its URL does.
    expect(fs.readFileSync(file, "utf8")).to.include(`[nbdb-${stack}-app]\nhost=127.0.0.1\nport=${out.pooler.port}\n`);
  });

  it("is named in npm start's summary with a command line that works as printed", async function () {
    const lines: string[] = [];
    const summary = { outputs: out, changes: [], seeded: false, rowCounts: {}, drifts: [], status: { nodes: [] }, audit: { broken: [], entries: 0 } } as unknown as StartSummary;
    printStartSummary(summary, (line) => lines.push(line));
    const printed = lines.find((l) => l.startsWith("  psql: "));
    expect(printed).to.match(new RegExp(`psql service=nbdb-${stack}-app \\(also -migrator, -readonly, -auditor, -admin\\)$`));
    const command = printed!.replace(/^ {2}psql: /, "").replace(/ \(also .*\)$/, "");
    const r = await run("/bin/sh", ["-c", `${command} -X -At -c 'SELECT current_user'`]);
    expect(r.stdout.trim()).to.equal("nb_app");
  });

  it("passes a URL's parameters on to psql (what the outputs say is what the service does)", async function () {
    const probe = new URL(out.connections.migrator);
    probe.searchParams.set("application_name", "nbdb-service-probe");
    const withParams = { ...out, connections: { ...out.connections, migrator: probe.toString() } };
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-service-")), "pg_service.conf");
    fs.writeFileSync(file, renderPgServiceConf(withParams), { mode: 0o600 });
    const r = await psqlService(file, serviceName(stack, "migrator"), "SELECT current_setting('application_name')");
    expect(r.stdout.trim()).to.equal("nbdb-service-probe");
  });

  it("refuses without --yes and for a production stack, changing nothing", async function () {
    await query(out.connections.admin, "CREATE TABLE public.reset_marker (id int)");
    const started = await postmasterStart(out);
    const cli = await run(process.execPath, [BIN, "reset", "--stack", stack]);
    expect(cli.code).to.equal(2);
    expect(cli.stderr).to.match(/reset deletes every database of stack .*Nothing was changed\. To do exactly that, add --yes/);
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-project-"));
    fs.writeFileSync(path.join(root, `Pulumi.${stack}.yaml`), "config:\n  neuralblitz-db:deletionProtection: true\n");
    const message = await rejection(reset({ stack, yes: true, projectRoot: root, progressTo: null }));
    expect(message).to.match(new RegExp(`stack '${stack}' is marked as production .*refused for it\\. Nothing was changed`));
    // The repository's own production stack, decided from Pulumi.prod.yaml, before anything is looked at.
    expect(await rejection(reset({ stack: "prod", yes: true, progressTo: null }))).to.match(/stack 'prod' is marked as production/);
    expect(await query(out.connections.admin, "SELECT to_regclass('public.reset_marker')::text AS t")).to.deep.equal([{ t: "reset_marker" }]);
    expect(await postmasterStart(out)).to.equal(started);
    expect(readOutputs(stack)).to.deep.equal(out);
  });

  it("downs, purges, brings up and seeds the stack: its own data is gone, seed data is there, the service file has the new passwords", async function () {
    const oldServiceFile = fs.readFileSync(pgServiceFile(stack), "utf8");
    const report = await reset({ stack, yes: true, progressTo: null });
    expect(report.replicas).to.equal(0);
    expect(report.seededRows).to.be.greaterThan(0);
    const fresh = readOutputs(stack);
    expect(fresh.connections.admin).to.not.equal(out.connections.admin);
    expect(await query(fresh.connections.admin, "SELECT to_regclass('public.reset_marker')::text AS t")).to.deep.equal([{ t: null }]);
    const [users] = await query<{ n: string }>(fresh.connections.admin, "SELECT count(*) AS n FROM neuralblitz.users WHERE username LIKE 'seed\\_%'");
    expect(Number(users.n)).to.be.greaterThan(0);
    expect(fs.existsSync(path.join(stackDir(stack), "seed.json"))).to.equal(true);
    const r = await psqlService(pgServiceFile(stack), serviceName(stack, "app"), "SELECT count(*) > 0 FROM neuralblitz.users");
    expect(r.stderr).to.equal("");
    expect(fs.readFileSync(pgServiceFile(stack), "utf8")).to.not.equal(oldServiceFile);
  });
});
