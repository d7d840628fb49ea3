// nbdb plan, verify, audit verify and maintain on stacks that are not local ones: a Pulumi stack's
// outputs (read with `pulumi stack output --json --show-secrets`, here from a stand-in `pulumi` on
// PATH printing what infra/outputs.ts exports, and once from the real CLI and engine), a libpq
// service file and the PG* environment. The database behind them is a real local stack.
import { expect } from "chai";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { libpqKeywords, pgServiceFile, serviceName } from "../scripts/local/pgService";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs } from "../scripts/local/state";
import { Client } from "pg";
import { libpqUrl, parseServiceFile } from "../scripts/ops/target";
import { engineBinDir, engineStack } from "./engineHarness";
import { uniqueStack } from "./helpers";

const BIN = path.join(__dirname, "..", "bin", "nbdb.js");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of this run without any PG* variable (so none leaks into a test's own). */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")));
  return { ...env, ...extra };
}

function nbdb(args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Run> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { env, cwd }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr })),
  );
}

/** A stack's outputs in the shape a Pulumi stack exports them (infra/outputs.ts): no admin, a dataKey, tls as files and PEM. */
function pulumiShape(out: LocalStackOutputs): Record<string, unknown> {
  const { admin: _admin, ...connections } = out.connections;
  const pem = fs.readFileSync(out.tls.caFile, "utf8");
  return {
    stack: out.stack,
    database: out.database,
    primary: out.primary,
    replicas: out.replicas,
    pooler: out.pooler,
    connections,
    dataKey: "k".repeat(64),
    tls: { serverCaFile: out.tls.caFile, serverCa: pem, poolerCaFile: out.tls.caFile, poolerCa: pem },
  };
}

/** A URL with another password: the role behind it can no longer log in. */
function wrongPassword(url: string): string {
  const u = new URL(url);
  u.password = "not-the-password";
  return u.toString();
}

describe("nbdb on deployed stacks", function () {
  const stack = uniqueStack("deployed");
  let out: LocalStackOutputs;
  let dir: string;
  let fakeBin: string;

  /** Make the stand-in `pulumi` print these outputs (or fail as pulumi does), recording its arguments. */
  function fakePulumi(outputs: Record<string, unknown> | { fail: string }): NodeJS.ProcessEnv {
    fs.writeFileSync(path.join(dir, "outputs.json"), "fail" in outputs ? `${outputs.fail}\n` : JSON.stringify(outputs));
    const script =
      "fail" in outputs
        ? `#!/bin/sh\necho "$@" > "${dir}/args"\ncat "${dir}/outputs.json" >&2\nexit 255\n`
        : `#!/bin/sh\necho "$@" > "${dir}/args"\ncat "${dir}/outputs.json"\n`;
    fs.writeFileSync(path.join(fakeBin, "pulumi"), script, { mode: 0o755 });
    return cleanEnv({ PATH: `${fakeBin}${path.delimiter}${process.env.PATH}` });
  }

  before(async function () {
    out = (await up({ stack, replicas: 0 })).outputs;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-deployed-"));
    fakeBin = path.join(dir, "bin");
    fs.mkdirSync(fakeBin);
  });

  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe("--pulumi-stack", function () {
    it("reads pulumi stack output --json --show-secrets and runs plan, verify and maintain as nb_migrator", async function () {
      const outputs = pulumiShape(out);
      // Every connection but the migrator's is locked out: the commands can only succeed as nb_migrator.
      const c = outputs.connections as Record<string, string>;
      const env = fakePulumi({ ...outputs, connections: { app: wrongPassword(c.app), readonly: wrongPassword(c.readonly), auditor: wrongPassword(c.auditor), migrator: c.migrator } });
      const plan = await nbdb(["plan", "--pulumi-stack", "prod"], env);
      expect(plan.stderr).to.equal("");
      expect(plan.code).to.equal(0);
      expect(plan.stdout).to.match(/^stack prod: all \d+ bundles are applied/);
      expect(fs.readFileSync(path.join(dir, "args"), "utf8").trim()).to.equal("stack output --json --show-secrets --stack prod");
      const verify = await nbdb(["verify", "--pulumi-stack", "prod", "--json"], env);
      expect(verify.code, verify.stderr).to.equal(0);
      expect(JSON.parse(verify.stdout)).to.deep.equal({ stack: "prod", drifts: [] });
      const maintain = await nbdb(["maintain", "--pulumi-stack", "prod", "--json"], env);
      expect(maintain.code, maintain.stderr).to.equal(0);
      expect(JSON.parse(maintain.stdout)).to.have.property("partitionsCreated");
    });

    it("runs audit verify as nb_auditor through the pooler", async function () {
      const outputs = pulumiShape(out);
      const c = outputs.connections as Record<string, string>;
      const env = fakePulumi({ ...outputs, connections: { ...c, migrator: wrongPassword(c.migrator) } });
      const audit = await nbdb(["audit", "verify", "--pulumi-stack", "prod"], env);
      expect(audit.code, audit.stderr).to.equal(0);
      expect(audit.stdout).to.match(/^audit chain intact/);
      // And the migrator's locked-out URL is what plan would use: it fails, naming the login.
      const plan = await nbdb(["plan", "--pulumi-stack", "prod"], env);
      expect(plan.code).to.equal(2);
      expect(plan.stderr).to.contain("nb_migrator");
    });

    it("verifies TLS against the outputs' CA certificate where the CA file the URLs name is not on this machine", async function () {
      const outputs = pulumiShape(out);
      const elsewhere = "/home/deployer/project/.nbdb/ca-of-another-machine.crt";
      const moved = (url: string) => url.replace(encodeURIComponent(out.tls.caFile).replace(/%2F/gi, "/"), elsewhere);
      const c = outputs.connections as Record<string, string>;
      expect(moved(c.auditor)).to.contain(elsewhere);
      const tls: Record<string, string> = { ...(outputs.tls as Record<string, string>), poolerCaFile: elsewhere };
      const shaped = { ...outputs, connections: { ...c, auditor: moved(c.auditor) }, tls };
      const audit = await nbdb(["audit", "verify", "--pulumi-stack", "prod"], fakePulumi(shaped));
      expect(audit.code, audit.stderr).to.equal(0);
      // Without the certificate in the outputs, nothing connects: it says which file to bring.
      const { poolerCa: _pem, ...noPem } = tls;
      const refused = await nbdb(["audit", "verify", "--pulumi-stack", "prod"], fakePulumi({ ...shaped, tls: noPem }));
      expect(refused.code).to.equal(2);
      expect(refused.stderr).to.contain(`${elsewhere}, which is not on this machine`);
    });

    it("says what is missing: the CLI, the stack, an output; and refuses two targets at once", async function () {
      const empty = path.join(dir, "empty");
      fs.mkdirSync(empty, { recursive: true });
      const noCli = await nbdb(["verify", "--pulumi-stack", "prod"], cleanEnv({ PATH: empty, NBDB_TOOLCHAIN_DIR: empty }));
      expect(noCli.code).to.equal(2);
      expect(noCli.stderr).to.contain("--pulumi-stack needs the pulumi CLI: none on PATH or in");

      const noStack = await nbdb(["verify", "--pulumi-stack", "nope"], fakePulumi({ fail: "error: no stack named 'nope' found" }));
      expect(noStack.code).to.equal(2);
      expect(noStack.stderr).to.contain("pulumi stack output --stack nope failed");
      expect(noStack.stderr).to.contain("no stack named 'nope' found");

      const { connections: _c, ...noConnections } = pulumiShape(out);
      const noOutput = await nbdb(["audit", "verify", "--pulumi-stack", "prod"], fakePulumi(noConnections));
      expect(noOutput.code).to.equal(2);
      expect(noOutput.stderr).to.contain("Pulumi stack 'prod' has no output connections.auditor");

      const both = await nbdb(["plan", "--stack", stack, "--pulumi-stack", "prod"], fakePulumi(pulumiShape(out)));
      expect(both.code).to.equal(2);
      expect(both.stderr).to.contain("--stack and --pulumi-stack name different databases: give one of them.");
    });

    it("reads a real Pulumi stack's exported outputs with the real CLI", async function () {
      const binDir = engineBinDir();
      if (!binDir) {
        if (process.env.CI) throw new Error("the Pulumi engine toolchain is missing: npm run --silent pulumi:toolchain -- --engine");
        this.skip();
      }
      const shape = pulumiShape(out);
      const ws = await engineStack(binDir, {
        project: "nbdb-deployed",
        stack: "review",
        program: async () => ({ ...shape, connections: pulumi.secret(shape.connections), dataKey: pulumi.secret(shape.dataKey) }),
      });
      try {
        await ws.stack.up();
        const home = path.join(path.dirname(ws.backend), "home");
        const env = cleanEnv({ PATH: `${binDir}${path.delimiter}${process.env.PATH}`, PULUMI_HOME: home, PULUMI_CONFIG_PASSPHRASE: "engine-tests", PULUMI_SKIP_UPDATE_CHECK: "1" });
        const audit = await nbdb(["audit", "verify", "--pulumi-stack", "review"], env, ws.stack.workspace.workDir);
        expect(audit.code, audit.stderr).to.equal(0);
        expect(audit.stdout).to.match(/^audit chain intact/);
      } finally {
        await ws.remove();
      }
    });
  });

  describe("libpq services and the PG* environment", function () {
    it("takes <name>-migrator and <name>-auditor of a service file per command", async function () {
      const env = cleanEnv({ PGSERVICEFILE: pgServiceFile(stack) });
      const prefix = `nbdb-${stack}`;
      expect(serviceName(stack, "auditor")).to.equal(`${prefix}-auditor`);
      const audit = await nbdb(["audit", "verify", "--service", prefix], env);
      expect(audit.code, audit.stderr).to.equal(0);
      expect(audit.stdout).to.match(/^audit chain intact/);
      const verify = await nbdb(["verify", "--pg-env"], { ...env, PGSERVICE: `${prefix}-migrator` });
      expect(verify.code, verify.stderr).to.equal(0);
      expect(verify.stdout).to.equal(`stack service ${prefix}-migrator: schema verified, no drift\n`);
    });

    it("refuses a service or PGUSER of another role than the command's least one, and an unknown service", async function () {
      const env = cleanEnv({ PGSERVICEFILE: pgServiceFile(stack) });
      const asMigrator = await nbdb(["audit", "verify", "--service", `nbdb-${stack}-migrator`], env);
      expect(asMigrator.code).to.equal(2);
      expect(asMigrator.stderr).to.contain("is 'nb_migrator', but this command connects as nb_auditor, its least role");
      const unknown = await nbdb(["plan", "--service", "nbdb-nothing"], env);
      expect(unknown.code).to.equal(2);
      expect(unknown.stderr).to.contain("no libpq service 'nbdb-nothing' (nor 'nbdb-nothing-migrator')");
      expect(unknown.stderr).to.contain(`nbdb-${stack}-migrator`);
      const admin = new URL(out.connections.admin);
      const asSuperuser = await nbdb(["maintain", "--pg-env"], cleanEnv({ PGUSER: decodeURIComponent(admin.username), PGPASSWORD: decodeURIComponent(admin.password) }));
      expect(asSuperuser.code).to.equal(2);
      expect(asSuperuser.stderr).to.contain("connects as nb_migrator, its least role: set PGUSER=nb_migrator");
    });

    it("connects with PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE and PGSSLROOTCERT", async function () {
      const k = Object.fromEntries(libpqKeywords(out.connections.migrator));
      const env = cleanEnv({ PGHOST: k.host, PGPORT: k.port, PGUSER: k.user, PGPASSWORD: k.password, PGDATABASE: k.dbname, PGSSLMODE: k.sslmode, PGSSLROOTCERT: k.sslrootcert });
      expect(k.sslmode).to.equal("verify-full");
      const plan = await nbdb(["plan", "--pg-env", "--json"], env);
      expect(plan.code, plan.stderr).to.equal(0);
      expect(JSON.parse(plan.stdout).stack).to.equal("the PG* environment");
      // Without the CA, verify-full cannot verify the server: refused, as libpq refuses it.
      const { PGSSLROOTCERT: _ca, ...noCa } = env;
      const refused = await nbdb(["plan", "--pg-env"], { ...noCa, HOME: dir });
      expect(refused.code).to.equal(2);
      expect(refused.stderr).to.match(/certificate/);
    });

    it("hands node-postgres the libpq keywords unchanged: a socket directory, any password, libpq's sslmode", function () {
      const keywords = new Map([["host", "/var/run/postgresql"], ["port", "5433"], ["user", "nb_migrator"], ["password", "p&s w=#%;+"], ["dbname", "neural blitz"], ["sslmode", "require"]]);
      const c = new Client({ connectionString: libpqUrl(keywords) }) as Client & { password: string; ssl: unknown };
      expect({ host: c.host, port: c.port, user: c.user, password: c.password, database: c.database }).to.deep.equal({ host: "/var/run/postgresql", port: 5433, user: "nb_migrator", password: "p&s w=#%;+", database: "neural blitz" });
      // libpq's require: encrypted, not verified (node-postgres alone would verify against Node's CAs).
      expect(c.ssl).to.deep.equal({ rejectUnauthorized: false });
    });

    it("parses service files as libpq does: comments, ';' and '#' and spaces kept in values, the first value of a key, 'key = value' refused", function () {
      const entries = parseServiceFile("ignored=before any entry\n# comment\n[a]\n  host=h1  \npassword=p;w #x\nhost=h2\n\n[b]\nuser=u\n", "f");
      expect([...entries.keys()]).to.deep.equal(["a", "b"]);
      expect(Object.fromEntries(entries.get("a")!)).to.deep.equal({ host: "h1", password: "p;w #x" });
      expect(() => parseServiceFile("[a]\nhost = h\n", "pg_service.conf")).to.throw("pg_service.conf:2 is no 'keyword=value' line");
    });
  });
});
