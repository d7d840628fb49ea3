// The Docker platform's point-in-time restore (docker.restoreFrom) as its container runs it: the
// rendered restore script, run for real as the server user on an empty data directory against a
// local stack's real pgBackRest repository, with the SQL the Docker program gives it. It restores
// exactly the rows committed before the time, promotes, sets this stack's passwords, clears
// pgBackRest's recovery settings, and never touches a directory that holds a database it did not
// restore (or anything else). No Docker engine runs here: the container's wiring is mock-tested in
// test/pulumi.platform.test.ts.
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { RESTORE_PENDING_FILE, RESTORE_REFUSED_EXIT, RESTORED_FILE, restoreScript } from "../infra/topology/pgbackrest";
import { restoreFinishSql } from "../infra/platform/dockerPrimaryInit";
import { stableScramVerifier } from "../infra/topology/scram";
import { restoredSchemaSql } from "../infra/database/layer";
import { ROLES, roleSql } from "../schema/roles";
import { backup } from "../scripts/ops/backup";
import { runPgbackrest } from "../scripts/local/backupRepo";
import { localContext } from "../scripts/local/context";
import { backupPaths } from "../scripts/local/pgbackrest";
import { up } from "../scripts/local/stack";
import { stackDir } from "../scripts/local/state";
import { chownToServer, freePort, run, sleep } from "../scripts/local/system";
import { query, uniqueStack, treeDigest } from "./helpers";

describe("Docker point-in-time restore script (docker.restoreFrom) on a real pgBackRest repository", function () {
  this.timeout(600_000);
  const source = uniqueStack("dockpitr");
  const ctx = () => localContext(source, () => undefined);
  const passwords = { admin: "restored-admin-pw", replication: "restored-repl-pw", poolerAuth: "restored-pooler-pw", backup: "restored-backup-pw" };
  let out: Awaited<ReturnType<typeof up>>["outputs"];
  let work: string;
  let scriptFile: string;
  let socketDir: string;
  let trustHba: string;
  let target: string;
  let scriptPort: number;
  const started: string[] = [];

  const serverDir = (name: string, mode = 0o700) => {
    const d = path.join(work, name);
    fs.mkdirSync(d, { mode });
    chownToServer(d, ctx().user);
    return d;
  };
  const serverFile = (name: string, content: string) => {
    const f = path.join(work, name);
    fs.writeFileSync(f, content, { mode: 0o600 });
    chownToServer(f, ctx().user);
    return f;
  };
  /** Runs the script as the container would (the settings as its arguments); its output and exit code. */
  const runScript = async (dir: string, file = scriptFile) => {
    const c = ctx();
    const r = await run("/bin/sh", ["-c", 'sh "$0" "$@" 2>&1; echo "exit code $?"', file, "-c", `hba_file=${trustHba}`], {
      as: c.user,
      env: { PGDATA: dir, PATH: `${c.bins.pgBinDir}:${process.env.PATH}` },
      timeoutMs: 300_000,
    });
    return r.stdout;
  };
  const pgCtl = (args: string[]) => run(path.join(ctx().bins.pgBinDir, "pg_ctl"), args, { as: ctx().user, timeoutMs: 120_000 });
  const labels = async (c: Client) => (await c.query("SELECT rule FROM neuralblitz.monitoring_alerts WHERE rule LIKE 'dockpitr-%' ORDER BY rule")).rows.map((r) => r.rule as string);
  const write = (label: string) =>
    query(out.connections.admin, "INSERT INTO neuralblitz.monitoring_alerts (rule, metric, condition, threshold, severity) VALUES ($1, 'm', '>', 1, 'info')", [label]);

  before(async function () {
    out = (await up({ stack: source, replicas: 0 })).outputs;
    work = path.join(stackDir(source), "docker-restore");
    fs.mkdirSync(work, { mode: 0o755 });
    socketDir = serverDir("socket", 0o755);
    trustHba = serverFile("trust.hba", "local all all trust\n");
    scriptPort = await freePort();
    const full = await backup({ stack: source, type: "full" });
    // pgBackRest starts from a backup that ended (in whole seconds) before the target.
    while ((await query<{ t: Date }>(out.connections.admin, "SELECT clock_timestamp() AS t"))[0].t.getTime() < Date.parse(full.stop) + 1000) await sleep(100);
    await write("dockpitr-1-before");
    const [{ t }] = await query<{ t: string }>(out.connections.admin, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`);
    target = t;
    await write("dockpitr-2-after");
    // What the local restore does too: a commit after the target, and its WAL segment archived.
    await query(out.connections.admin, "SELECT pg_catalog.txid_current()");
    await runPgbackrest(ctx(), ["check"], 300_000);
    scriptFile = serverFile(
      "restore.sh",
      restoreScript({
        configFile: backupPaths(ctx()).config,
        stanza: source,
        target,
        socketDir,
        port: scriptPort,
        superuser: "postgres",
        database: "neuralblitz",
        finishSqlFile: serverFile("finish.sql", restoreFinishSql(passwords)),
      }),
    );
  });

  after(async function () {
    for (const dir of started) await pgCtl(["-D", dir, "-m", "immediate", "stop"]).catch(() => undefined);
  });

  it("restores an empty directory to exactly the rows committed before the time, promoted, with this stack's passwords and no recovery settings", async function () {
    const dir = serverDir("primary-data");
    const log = await runScript(dir);
    if (!log.includes("exit code 0")) console.log(log);
    expect(log).to.include(`restoring stanza ${source} as of ${target}`).and.include("restored, promoted and finished").and.include("exit code 0");
    expect(fs.existsSync(path.join(dir, RESTORE_PENDING_FILE))).to.equal(false);
    expect(fs.readFileSync(path.join(dir, RESTORED_FILE), "utf8")).to.equal(`stanza ${source} as of ${target}\n`);
    // pgBackRest's restore_command (the source's repository) is gone: Docker's settings are the command line's.
    expect(fs.readFileSync(path.join(dir, "postgresql.auto.conf"), "utf8")).to.not.include("restore_command");

    // Started again as the stack's primary would be: reachable with this stack's administrator password.
    const port = await freePort();
    const hba = serverFile("scram.hba", "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n");
    await pgCtl(["-D", dir, "-w", "-l", path.join(socketDir, "restored.log"), "-o", `-c port=${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${socketDir} -c hba_file=${hba} -c archive_mode=off`, "start"]);
    started.push(dir);
    const c = new Client({ host: "127.0.0.1", port, user: "postgres", password: passwords.admin, database: "neuralblitz", ssl: false });
    await c.connect();
    try {
      expect(await labels(c)).to.deep.equal(["dockpitr-1-before"]);
      expect((await c.query("SELECT pg_catalog.pg_is_in_recovery() AS r")).rows[0].r).to.equal(false);
      const verifiers = Object.fromEntries((await c.query("SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname IN ('nb_replicator', 'nb_backup')")).rows.map((r) => [r.rolname, r.rolpassword]));
      expect(verifiers).to.deep.equal({ nb_replicator: stableScramVerifier("nb_replicator", passwords.replication), nb_backup: stableScramVerifier("nb_backup", passwords.backup) });
      // What the database layer then runs on a restored primary instead of creating roles and schema anew.
      await c.query(roleSql(ROLES.find((r) => r.name === "nb_app")!, stableScramVerifier("nb_app", "restored-app-pw")));
      await c.query(restoredSchemaSql());
      expect((await c.query("SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = 'nb_app'")).rows[0].rolpassword).to.equal(stableScramVerifier("nb_app", "restored-app-pw"));
      expect(await labels(c)).to.deep.equal(["dockpitr-1-before"]);
    } finally {
      await c.end();
    }
    await pgCtl(["-D", dir, "-w", "-m", "fast", "stop"]);
    started.pop();

    // Run again (a restore container made again later): the restore is done, nothing changes.
    const before = treeDigest(dir);
    const again = await runScript(dir);
    expect(again).to.include("already restored").and.include("exit code 0");
    expect(treeDigest(dir)).to.equal(before);

    // Killed after the copy, before it finished: the next run promotes and finishes it.
    fs.rmSync(path.join(dir, RESTORED_FILE));
    fs.writeFileSync(path.join(dir, RESTORE_PENDING_FILE), "");
    chownToServer(path.join(dir, RESTORE_PENDING_FILE), ctx().user);
    const resumed = await runScript(dir);
    expect(resumed).to.include("restored, promoted and finished").and.include("exit code 0");
    expect(resumed).to.not.include("restoring stanza");
    expect(fs.existsSync(path.join(dir, RESTORED_FILE))).to.equal(true);
    expect(fs.existsSync(path.join(dir, RESTORE_PENDING_FILE))).to.equal(false);
  });

  it("restores to the newest archived WAL for time \"latest\" (pgBackRest's default type), promoted and finished", async function () {
    const latest = serverFile(
      "restore-latest.sh",
      restoreScript({ configFile: backupPaths(ctx()).config, stanza: source, target: "latest", socketDir, port: scriptPort, superuser: "postgres", database: "neuralblitz", finishSqlFile: path.join(work, "finish.sql") }),
    );
    const dir = serverDir("latest-data");
    const log = await runScript(dir, latest);
    if (!log.includes("exit code 0")) console.log(log);
    expect(log).to.include("restored, promoted and finished").and.include("exit code 0");
    await pgCtl(["-D", dir, "-w", "-l", path.join(socketDir, "latest.log"), "-o", `-c port=${scriptPort} -c listen_addresses= -c unix_socket_directories=${socketDir} -c hba_file=${trustHba} -c archive_mode=off`, "start"]);
    started.push(dir);
    const c = new Client({ host: socketDir, port: scriptPort, user: "postgres", database: "neuralblitz" });
    await c.connect();
    try {
      expect(await labels(c)).to.deep.equal(["dockpitr-1-before", "dockpitr-2-after"]);
      expect((await c.query("SELECT pg_catalog.pg_is_in_recovery() AS r")).rows[0].r).to.equal(false);
    } finally {
      await c.end();
    }
    await pgCtl(["-D", dir, "-w", "-m", "fast", "stop"]);
    started.pop();
  });

  it("refuses, changing nothing, a directory holding a database no restore made, or other files", async function () {
    const existing = serverDir("existing-cluster");
    fs.writeFileSync(path.join(existing, "PG_VERSION"), "15\n");
    const other = serverDir("other-files");
    fs.writeFileSync(path.join(other, "notes.txt"), "keep me\n");
    for (const [dir, why] of [
      [existing, "already holds a database"],
      [other, "holds files that are no database"],
    ]) {
      const before = treeDigest(dir);
      const log = await runScript(dir);
      expect(log).to.include(why).and.include("Nothing was changed").and.include(`exit code ${RESTORE_REFUSED_EXIT}`);
      expect(treeDigest(dir)).to.equal(before);
    }
  });
});
