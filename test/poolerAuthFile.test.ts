// The pooler as the AWS stack runs it: RDS lets no role read pg_authid, so instead of auth_query the
// auth file lists the pooled logins' SCRAM verifiers (the stable ones the database layer sets on
// the roles), and PgBouncer passes the client's SCRAM proof through to the server. Real PgBouncer,
// real PostgreSQL.
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { POOLER_DEFAULTS, renderPgbouncerAuthFile, renderPgbouncerIni } from "../infra/topology/pgbouncerIni";
import { stableScramVerifier } from "../infra/topology/scram";
import { DATABASE } from "../schema/roles";
import { localContext } from "../scripts/local/context";
import { primarySocketDir } from "../scripts/local/postgresNode";
import { up } from "../scripts/local/stack";
import { HOST, LocalStackOutputs, caFile, loadState, stackDir } from "../scripts/local/state";
import { POOLER_TLS_NAME, certFile, keyFile } from "../scripts/local/tls";
import { connectionUrl } from "../client/outputs";
import { chownToServer, freePort, processAlive, run, waitFor } from "../scripts/local/system";
import { query, rejection, uniqueStack } from "./helpers";

describe("pooler with SCRAM verifiers in its auth file (the AWS mode)", function () {
  const stack = uniqueStack("authfile");
  let out: LocalStackOutputs;
  let port: number;
  let dir: string;
  let passwords: Record<string, string>;

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    passwords = loadState(stack)!.passwords;
    // What the database layer does on RDS: the roles' verifiers are the stable ones.
    for (const role of ["nb_app", "nb_auditor"]) {
      await query(out.connections.admin, `ALTER ROLE ${role} PASSWORD '${stableScramVerifier(role, passwords[role])}'`);
    }
    const ctx = localContext(stack, () => undefined);
    dir = path.join(stackDir(stack), "pgbouncer-authfile");
    fs.mkdirSync(dir, { mode: 0o700 });
    chownToServer(dir, ctx.user);
    port = await freePort();
    const files = {
      "pgbouncer.ini": renderPgbouncerIni({
        listenAddr: HOST,
        listenPort: port,
        // The pooled roles reach the primary only over its Unix socket (pg_hba.conf).
        serverHost: primarySocketDir(ctx),
        serverPort: out.primary.port,
        database: DATABASE,
        authFile: path.join(dir, "userlist.txt"),
        ...POOLER_DEFAULTS,
        secretsFrom: "auth_file",
        // TLS on both sides, as on ECS: the stack's pooler certificate, the primary verified.
        clientTls: { certFile: certFile(ctx, POOLER_TLS_NAME), keyFile: keyFile(ctx, POOLER_TLS_NAME) },
        serverTls: { sslmode: "verify-full", caFile: caFile(stack) },
        logFile: path.join(dir, "pgbouncer.log"),
        pidFile: path.join(dir, "pgbouncer.pid"),
      }),
      "userlist.txt": renderPgbouncerAuthFile(passwords.nb_pgbouncer, {
        nb_app: stableScramVerifier("nb_app", passwords.nb_app),
        nb_auditor: stableScramVerifier("nb_auditor", passwords.nb_auditor),
      }),
    };
    for (const [name, content] of Object.entries(files)) {
      fs.writeFileSync(path.join(dir, name), content, { mode: 0o600 });
      chownToServer(path.join(dir, name), ctx.user);
    }
    await run(ctx.bins.pgbouncer, ["-d", path.join(dir, "pgbouncer.ini")], { as: ctx.user });
    await waitFor("the second pgbouncer", 10_000, async () => (fs.existsSync(path.join(dir, "pgbouncer.pid")) ? true : undefined));
  });

  after(async function () {
    const pidFile = path.join(dir, "pgbouncer.pid");
    if (!fs.existsSync(pidFile)) return;
    const pid = Number(fs.readFileSync(pidFile, "utf8"));
    process.kill(pid, "SIGTERM");
    await waitFor("pgbouncer to exit", 10_000, async () => (processAlive(pid, "pgbouncer") ? undefined : true));
  });

  function viaThisPooler(role: string, password: string): string {
    return connectionUrl(role, password, { host: HOST, port }, DATABASE, caFile(stack));
  }

  it("has no auth_query and no plain password but the stats user's", function () {
    const ini = fs.readFileSync(path.join(dir, "pgbouncer.ini"), "utf8");
    expect(ini).to.not.match(/auth_query|auth_user/);
    const users = fs.readFileSync(path.join(dir, "userlist.txt"), "utf8");
    expect(users).to.not.include(passwords.nb_app);
    expect(users).to.match(/"nb_app" "SCRAM-SHA-256\$4096:/);
  });

  it("logs the pooled logins in and passes them through to the server", async function () {
    expect(await query(viaThisPooler("nb_app", passwords.nb_app), "SELECT current_user AS u")).to.deep.equal([{ u: "nb_app" }]);
    expect(await query(viaThisPooler("nb_auditor", passwords.nb_auditor), "SELECT current_user AS u")).to.deep.equal([{ u: "nb_auditor" }]);
  });

  it("refuses a wrong password, a login it does not list, and the superuser", async function () {
    expect(await rejection(query(viaThisPooler("nb_app", "wrong-password"), "SELECT 1"))).to.match(/password authentication failed|authentication/);
    expect(await rejection(query(viaThisPooler("nb_readonly", passwords.nb_readonly), "SELECT 1"))).to.match(/no such user|authentication/);
    expect(await rejection(query(viaThisPooler("postgres", passwords.postgres), "SELECT 1"))).to.match(/no such user|authentication/);
  });
});
