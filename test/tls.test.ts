// TLS on every hop, for real: a local stack's servers and pooler present certificates of the stack's
// own CA, every connection between them and from clients is encrypted and verified (verify-full),
// clients without TLS or with another CA are refused, a no-op `up` rewrites nothing, and `up`
// renews what is expiring, wrong or for other names. Then the Pulumi stacks' issuer
// (TlsCertificates) on its own, as the engine would run it.
import { expect } from "chai";
import { TLSSocket } from "tls";
import { execFile } from "child_process";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import * as pulumi from "@pulumi/pulumi";
import { Client } from "pg";
import { TlsCertificatesInputs, TlsCertificatesOutputs, tlsCertificatesProvider } from "../infra/dynamic/tlsCertificates";
import { KeyPair, LOOPBACK_NAMES, issueServerCert, newCa } from "../infra/topology/tls";
import { POOLER_DEFAULTS, renderPgbouncerIni } from "../infra/topology/pgbouncerIni";
import { renderHba } from "../infra/topology/postgresSettings";
import { localContext } from "../scripts/local/context";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, caFile, loadState, stackDir, tlsDir } from "../scripts/local/state";
import { findBinaries, serverUser, waitFor } from "../scripts/local/system";
import { POOLER_TLS_NAME, certFile, keyFile, presentedCert, serverNames, waitPresenting } from "../scripts/local/tls";
import { query, rejection, uniqueStack } from "./helpers";

const REPO = path.join(__dirname, "..");
const DAY_MS = 86_400_000;

function psql(url: string, sql: string): Promise<string> {
  return promisify(execFile)(path.join(findBinaries().pgBinDir, "psql"), [url, "-X", "-At", "-c", sql]).then((r) => r.stdout.trim());
}

function withUrl(url: string, change: (u: URL) => void): string {
  const u = new URL(url);
  change(u);
  return u.toString();
}

function readPair(file: string): KeyPair {
  return { cert: fs.readFileSync(`${file}.crt`, "utf8"), key: fs.readFileSync(`${file}.key`, "utf8") };
}

/** Put a certificate in place of a server's, as a renewal due (or a mistake) would leave it. */
function replaceCert(stack: string, server: string, pair: KeyPair): void {
  const ctx = localContext(stack, () => undefined);
  fs.writeFileSync(certFile(ctx, server), pair.cert);
  fs.writeFileSync(keyFile(ctx, server), pair.key);
}

describe("TLS on every hop (local stack)", function () {
  const stack = uniqueStack("tls");
  let out: LocalStackOutputs;
  let replicaAdmin: string;
  let otherCa: string;

  before(async function () {
    out = (await up({ stack, replicas: 1, bundles: false })).outputs;
    replicaAdmin = withUrl(out.connections.admin, (u) => (u.port = String(out.replicas[0].port)));
    otherCa = path.join(stackDir(stack), "other-ca.crt");
    fs.writeFileSync(otherCa, newCa("someone else").cert);
  });

  it("names the stack's CA in outputs and in every URL, with sslmode=verify-full, never sslmode=disable", function () {
    expect(out.tls).to.deep.equal({ caFile: caFile(stack) });
    expect(fs.existsSync(caFile(stack))).to.equal(true);
    for (const [role, url] of Object.entries(out.connections)) {
      const u = new URL(url);
      expect(u.searchParams.get("sslmode"), role).to.equal("verify-full");
      expect(u.searchParams.get("sslrootcert"), role).to.equal(caFile(stack));
    }
    expect(fs.readFileSync(path.join(stackDir(stack), "outputs.json"), "utf8")).not.to.match(/sslmode=(disable|allow|prefer)/);
  });

  it("keeps every private key mode 0600, the servers' owned by the server user", function () {
    const user = serverUser();
    const ctx = localContext(stack, () => undefined);
    for (const server of ["primary", "replica-0", POOLER_TLS_NAME]) {
      const st = fs.statSync(keyFile(ctx, server));
      expect(st.mode & 0o777, server).to.equal(0o600);
      expect(st.uid, server).to.equal(user.uid);
    }
    const caKey = fs.statSync(path.join(tlsDir(stack), "ca.key"));
    expect(caKey.mode & 0o777).to.equal(0o600);
    expect(caKey.uid).to.equal(process.getuid!());
  });

  it("encrypts every network hop: replica → primary, clients → pooler, clients → servers; the pooler reaches the primary over its private socket", async function () {
    // Hold a transaction through the pooler, so its server connection is busy while we look.
    const app = new Client({ connectionString: out.connections.app });
    await app.connect();
    try {
      await app.query("BEGIN");
      await app.query("SELECT 1");
      const rows = await query<{ usename: string; backend_type: string; application_name: string; ssl: boolean }>(
        out.connections.admin,
        `SELECT a.usename, a.backend_type, a.application_name, s.ssl
           FROM pg_catalog.pg_stat_activity a JOIN pg_catalog.pg_stat_ssl s USING (pid)
          WHERE a.client_addr IS NOT NULL ORDER BY 1, 2`,
      );
      expect(rows.find((r) => r.backend_type === "walsender" && r.application_name === "replica-0"), "the replica's stream").to.deep.include({ ssl: true });
      for (const r of rows) expect(r.ssl, `${r.usename} ${r.backend_type} ${r.application_name}`).to.equal(true);
      // The pooler's server connections and its auth lookup cross no network: the primary's Unix
      // socket, in a directory only the server user can enter (docs/security.md).
      const pooled = await query<{ usename: string; tcp: boolean }>(
        out.connections.admin,
        "SELECT usename, client_addr IS NOT NULL AS tcp FROM pg_catalog.pg_stat_activity WHERE usename IN ('nb_app', 'nb_pgbouncer')",
      );
      expect(pooled.map((r) => r.usename)).to.include("nb_app");
      for (const r of pooled) expect(r.tcp, `${r.usename} from the pooler`).to.equal(false);
      const [mine] = await query<{ ssl: boolean }>(replicaAdmin, "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()");
      expect(mine.ssl).to.equal(true);
      const [conninfo] = await query<{ primary_conninfo: string }>(replicaAdmin, "SHOW primary_conninfo");
      // pg_basebackup --write-recovery-conf quotes the values.
      expect(conninfo.primary_conninfo).to.include("sslmode='verify-full'").and.include(`sslrootcert='${caFile(stack)}'`);

      const admin = withUrl(out.connections.app, (u) => {
        u.username = "nb_pgbouncer";
        u.password = encodeURIComponent(loadState(stack)!.passwords.nb_pgbouncer);
        u.pathname = "/pgbouncer";
      });
      const console_ = new Client({ connectionString: admin });
      await console_.connect();
      try {
        const clients = (await console_.query("SHOW CLIENTS")).rows;
        const servers = (await console_.query("SHOW SERVERS")).rows;
        expect(clients.map((c) => c.user)).to.include.members(["nb_app", "nb_pgbouncer"]);
        expect(servers.map((s) => s.user)).to.include("nb_app");
        for (const row of clients) expect(row.tls, `${row.type} ${row.user}`).to.match(/^TLSv1\.[23]\//);
      } finally {
        await console_.end();
      }
    } finally {
      await app.query("ROLLBACK").catch(() => undefined);
      await app.end();
    }
  });

  it("works with the outputs' URLs as they are, in node-postgres and in psql", async function () {
    for (const [role, url] of Object.entries(out.connections)) {
      const c = new Client({ connectionString: url });
      await c.connect();
      try {
        // The hop this client makes (to the pooler or to a server) is TLS, verified.
        const stream = (c as unknown as { connection: { stream: unknown } }).connection.stream;
        expect(stream instanceof TLSSocket && stream.authorized, role).to.equal(true);
        expect((await c.query("SELECT current_user AS u")).rows[0].u, role).to.equal(role === "admin" ? "postgres" : `nb_${role}`);
      } finally {
        await c.end();
      }
      expect(await psql(url, "SELECT current_user"), role).to.equal(role === "admin" ? "postgres" : `nb_${role}`);
    }
  });

  it("refuses clients without TLS at the pooler, the primary and the replica", async function () {
    const targets = { pooler: out.connections.app, primary: out.connections.migrator, replica: replicaAdmin };
    for (const [where, url] of Object.entries(targets)) {
      const plain = withUrl(url, (u) => (u.search = "?sslmode=disable"));
      expect(await rejection(query(plain, "SELECT 1")), where).to.match(/SSL required|no pg_hba\.conf entry .* no encryption/);
      expect(await rejection(psql(plain, "SELECT 1")), where).to.match(/SSL required|no pg_hba\.conf entry .* no encryption/);
    }
  });

  it("refuses to connect to a server whose certificate another CA signed (node-postgres and psql really verify)", async function () {
    for (const url of [out.connections.app, out.connections.migrator, replicaAdmin]) {
      const wrong = withUrl(url, (u) => u.searchParams.set("sslrootcert", otherCa));
      expect(await rejection(query(wrong, "SELECT 1"))).to.match(/self[- ]signed certificate|unable to verify|unable to get local issuer/);
      expect(await rejection(psql(wrong, "SELECT 1"))).to.match(/certificate verify failed/);
    }
  });

  it("points a replica built before TLS (primary_conninfo without sslmode) at verify-full, and it streams on", async function () {
    const state = loadState(stack)!;
    const old = `user=nb_replicator password=${state.passwords.nb_replicator} host=127.0.0.1 port=${out.primary.port} application_name=replica-0`;
    await query(replicaAdmin, `ALTER SYSTEM SET primary_conninfo = '${old}'`);
    await query(replicaAdmin, "SELECT pg_catalog.pg_reload_conf()");
    const { changes } = await up({ stack, bundles: false });
    expect(changes).to.deep.equal(["replica-0 now streams from the primary with sslmode=verify-full"]);
    const [conninfo] = await query<{ primary_conninfo: string }>(replicaAdmin, "SHOW primary_conninfo");
    expect(conninfo.primary_conninfo).to.match(/sslmode=verify-full sslrootcert='.*ca\.crt'$/);
    await waitFor("replica-0 to stream again", 30_000, async () => {
      const rows = await query<{ state: string; ssl: boolean }>(
        out.connections.admin,
        "SELECT r.state, s.ssl FROM pg_catalog.pg_stat_replication r JOIN pg_catalog.pg_stat_ssl s USING (pid) WHERE r.application_name = 'replica-0'",
      );
      return rows.length === 1 && rows[0].state === "streaming" && rows[0].ssl ? true : undefined;
    });
    expect((await up({ stack, bundles: false })).changes).to.deep.equal([]);
  });

  it("rewrites nothing on a no-op up", async function () {
    const files = (dir: string) => fs.readdirSync(dir).map((f) => path.join(dir, f)).filter((f) => fs.statSync(f).isFile());
    const watched = [...files(tlsDir(stack)), ...files(path.join(stackDir(stack), "pgbouncer")).filter((f) => !f.endsWith(".pid")), path.join(stackDir(stack), "outputs.json")];
    for (const node of ["primary", "replica-0"]) watched.push(path.join(stackDir(stack), node, "nbdb.conf"), path.join(stackDir(stack), node, "pg_hba.conf"));
    const snapshot = () => watched.map((f) => `${f} ${fs.statSync(f).ino} ${fs.statSync(f).mtimeMs}`);
    const before = snapshot();
    const result = await up({ stack, bundles: false });
    expect(result.changes).to.deep.equal([]);
    expect(snapshot()).to.deep.equal(before);
  });

  it("renews certificates in their last 30 days, reloading the servers without dropping their clients", async function () {
    const ctx = localContext(stack, () => undefined);
    const ca = readPair(path.join(tlsDir(stack), "ca"));
    const ports: Record<string, number> = { primary: out.primary.port, "replica-0": out.replicas[0].port, [POOLER_TLS_NAME]: out.pooler.port };
    const held = new Client({ connectionString: out.connections.app });
    await held.connect();
    try {
      const expiring: Record<string, string> = {};
      for (const server of Object.keys(ports)) {
        const pair = issueServerCert(ca, serverNames(ctx, server), new Date(), 10);
        replaceCert(stack, server, pair);
        expiring[server] = new X509Certificate(pair.cert).serialNumber;
      }
      const { changes } = await up({ stack, bundles: false });
      for (const server of Object.keys(ports)) {
        expect(changes.some((c) => c.startsWith(`issued the TLS certificate of ${server}: it expires on`)), server).to.equal(true);
        const now = await presentedCert(ports[server]);
        expect(now.serialNumber, server).to.not.equal(expiring[server]);
        expect(now.serialNumber, server).to.equal(new X509Certificate(fs.readFileSync(certFile(ctx, server))).serialNumber);
        expect(new Date(now.validTo).getTime() - Date.now(), server).to.be.greaterThan(300 * DAY_MS);
      }
      expect((await held.query("SELECT 1 AS one")).rows).to.deep.equal([{ one: 1 }]);
      expect((await up({ stack, bundles: false })).changes).to.deep.equal([]);
    } finally {
      await held.end();
    }
  });

  it("re-issues a certificate for other names, which verify-full refused (the host name is checked, not only the CA)", async function () {
    const ctx = localContext(stack, () => undefined);
    const ca = readPair(path.join(tlsDir(stack), "ca"));
    replaceCert(stack, "primary", issueServerCert(ca, { name: "elsewhere", dnsNames: ["db.elsewhere.example"], ipAddresses: ["192.0.2.1"] }));
    await promisify(execFile)(path.join(findBinaries().pgBinDir, "pg_ctl"), ["reload", `--pgdata=${path.join(stackDir(stack), "primary")}`], {
      uid: ctx.user.uid,
      gid: ctx.user.gid,
    });
    await waitPresenting(ctx, "primary", out.primary.port);
    expect(await rejection(query(out.connections.migrator, "SELECT 1"))).to.match(/Hostname\/IP does not match|IP: 127\.0\.0\.1 is not in the cert's list/);
    expect(await rejection(psql(out.connections.migrator, "SELECT 1"))).to.match(/server certificate for .* does not match host name|does not match/);
    const { changes } = await up({ stack, bundles: false });
    expect(changes).to.deep.equal([`issued the TLS certificate of primary: its names (DNS:db.elsewhere.example, IP Address:192.0.2.1) are not DNS:localhost, IP Address:127.0.0.1`]);
    expect(await query(out.connections.migrator, "SELECT 1 AS one")).to.deep.equal([{ one: 1 }]);
  });

  it("replaces a CA that would expire within a year, and every certificate with it; the outputs' URLs keep working", async function () {
    const ctx = localContext(stack, () => undefined);
    const old = newCa(stack, new Date(Date.now() - 3400 * DAY_MS));
    fs.writeFileSync(caFile(stack), old.cert);
    fs.writeFileSync(path.join(tlsDir(stack), "ca.key"), old.key);
    const { changes } = await up({ stack, bundles: false });
    expect(changes[0]).to.match(/^issued a new CA .*: it expires on /);
    for (const server of ["primary", "replica-0", POOLER_TLS_NAME]) {
      expect(changes, server).to.include(`issued the TLS certificate of ${server}: the stack's CA did not sign it`);
      expect(new X509Certificate(fs.readFileSync(certFile(ctx, server))).checkIssued(new X509Certificate(fs.readFileSync(caFile(stack))))).to.equal(true);
    }
    for (const [role, url] of Object.entries(out.connections)) expect(await query(url, "SELECT 1 AS one"), role).to.deep.equal([{ one: 1 }]);
  });

  it("rotates everything on request (up --renew-tls): a client still trusting the old CA is refused, the outputs' URLs work", async function () {
    const oldCa = path.join(stackDir(stack), "old-ca.crt");
    fs.copyFileSync(caFile(stack), oldCa);
    const { changes } = await up({ stack, bundles: false, renewTls: true });
    expect(changes[0]).to.match(/^issued a new CA .*: asked for with --renew-tls$/);
    expect(changes.filter((c) => c.startsWith("issued the TLS certificate of"))).to.have.length(3);
    expect(await rejection(query(withUrl(out.connections.app, (u) => u.searchParams.set("sslrootcert", oldCa)), "SELECT 1"))).to.match(/self[- ]signed certificate|unable to verify|unable to get local issuer/);
    for (const [role, url] of Object.entries(out.connections)) expect(await query(url, "SELECT 1 AS one"), role).to.deep.equal([{ one: 1 }]);
    expect((await up({ stack, bundles: false })).changes).to.deep.equal([]);
  });
});

describe("TLS in the shared renderers", function () {
  const base = { listenAddr: "127.0.0.1", listenPort: 6432, serverHost: "db", serverPort: 5432, database: "neuralblitz", authFile: "/a", ...POOLER_DEFAULTS };

  it("refuses a pooler asked to verify the server without a CA, saying what is missing", function () {
    expect(() => renderPgbouncerIni({ ...base, serverTls: { sslmode: "verify-full", caFile: "" } })).to.throw(/verify-full needs the CA file/);
  });

  it("puts the pooler's TLS settings in their own group", function () {
    const ini = renderPgbouncerIni({ ...base, clientTls: { certFile: "/c.crt", keyFile: "/c.key" }, serverTls: { sslmode: "verify-full", caFile: "/ca.crt" } }).split("\n");
    const at = ini.indexOf("; TLS");
    expect(at).to.be.greaterThan(0);
    expect(ini.slice(at + 1, at + 8)).to.deep.equal([
      "client_tls_sslmode = require",
      "client_tls_cert_file = /c.crt",
      "client_tls_key_file = /c.key",
      "client_tls_protocols = tlsv1.2,tlsv1.3",
      "server_tls_sslmode = verify-full",
      "server_tls_ca_file = /ca.crt",
      "server_tls_protocols = tlsv1.2,tlsv1.3",
    ]);
  });

  it("admits TCP only over TLS in pg_hba.conf", function () {
    const tcp = renderHba(["10.0.0.0/8"], "nb_replicator").split("\n").filter((l) => /^host/.test(l));
    expect(tcp.length).to.be.greaterThan(0);
    // Whatever rules decide who may come from where, each TCP line admits TLS connections only.
    for (const line of tcp) expect(line).to.match(/^hostssl /);
  });
});

describe("TlsCertificates (the Pulumi stacks' issuer)", function () {
  const provider = tlsCertificatesProvider();
  const servers = ["nbdb-primary", "nbdb-pooler"].map((name) => ({ name, dnsNames: [name, ...LOOPBACK_NAMES.dnsNames], ipAddresses: [...LOOPBACK_NAMES.ipAddresses] }));
  let dir: string;
  let inputs: TlsCertificatesInputs;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-tlsres-"));
    inputs = { label: "nbdb", servers, caFile: path.join(dir, "stack", "ca.crt") };
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("issues a CA and one certificate per server, writes the CA file, and reports no change on the next run", async function () {
    const { outs } = (await provider.create(inputs)) as { outs: TlsCertificatesOutputs };
    expect(fs.readFileSync(inputs.caFile, "utf8")).to.equal(outs.caCert);
    const ca = new X509Certificate(outs.caCert);
    for (const s of servers) {
      const cert = new X509Certificate(outs.serverCerts[s.name]);
      expect(cert.checkIssued(ca) && cert.verify(ca.publicKey), s.name).to.equal(true);
      expect(cert.subjectAltName).to.equal(`DNS:${s.name}, DNS:localhost, IP Address:127.0.0.1`);
      expect(cert.checkPrivateKey(require("crypto").createPrivateKey(outs.serverKeys[s.name]))).to.equal(true);
    }
    expect((await provider.diff!("nbdb", outs, inputs)).changes).to.equal(false);
  });

  it("renews only what needs it: an expiring certificate, a new server, a missing CA file; the CA stays", async function () {
    const { outs } = (await provider.create(inputs)) as { outs: TlsCertificatesOutputs };
    const ca = { cert: outs.caCert, key: outs.caKey };
    const expiring = { ...outs, serverCerts: { ...outs.serverCerts }, serverKeys: { ...outs.serverKeys } };
    const short = issueServerCert(ca, servers[0], new Date(), 5);
    expiring.serverCerts["nbdb-primary"] = short.cert;
    expiring.serverKeys["nbdb-primary"] = short.key;
    expect((await provider.diff!("nbdb", expiring, inputs)).changes).to.equal(true);
    const { outs: renewed } = (await provider.update!("nbdb", expiring, inputs)) as { outs: TlsCertificatesOutputs };
    expect(renewed.caCert).to.equal(outs.caCert);
    expect(renewed.serverCerts["nbdb-pooler"]).to.equal(outs.serverCerts["nbdb-pooler"]);
    expect(renewed.serverCerts["nbdb-primary"]).to.not.equal(short.cert);
    expect((await provider.diff!("nbdb", renewed, inputs)).changes).to.equal(false);

    const more = { ...inputs, servers: [...servers, { name: "nbdb-replica-0", dnsNames: ["nbdb-replica-0"], ipAddresses: [] }] };
    expect((await provider.diff!("nbdb", renewed, more)).changes).to.equal(true);

    fs.rmSync(inputs.caFile);
    expect((await provider.diff!("nbdb", renewed, inputs)).changes).to.equal(true);
    await provider.update!("nbdb", renewed, inputs);
    expect(fs.readFileSync(inputs.caFile, "utf8")).to.equal(outs.caCert);
  });

  it("runs where the Pulumi engine runs it: serialized, capturing plain strings only, in a plain node process", async function () {
    const text = (await pulumi.runtime.serializeFunction(() => provider)).text;
    expect(text).not.to.match(/require\("node-forge"\)|process\.binding/);
    const captured = [...text.matchAll(/with\(\{ (.*) \}\) \{/g)].flatMap((m) => m[1].split(/, (?=\w+: )/));
    for (const entry of captured) expect(entry).to.match(/^\w+: (__\w+|"[^"]*"|undefined)$/);
    const work = fs.mkdtempSync(path.join(dir, "engine-"));
    fs.writeFileSync(path.join(work, "provider.js"), text);
    const engineInputs = { ...inputs, caFile: path.join(work, "ca.crt") };
    fs.writeFileSync(path.join(work, "inputs.json"), JSON.stringify(engineInputs));
    const script = `
      const fs = require("fs");
      const provider = require("require-from-string")(fs.readFileSync(process.argv[1], "utf8")).handler();
      provider.create(JSON.parse(fs.readFileSync(process.argv[2], "utf8")))
        .then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1); });`;
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", script, path.join(work, "provider.js"), path.join(work, "inputs.json")], { cwd: REPO });
    const result = JSON.parse(stdout) as { outs: TlsCertificatesOutputs };
    expect(Object.keys(result.outs.serverCerts)).to.deep.equal(["nbdb-primary", "nbdb-pooler"]);
    expect(fs.readFileSync(engineInputs.caFile, "utf8")).to.equal(result.outs.caCert);
  });
});
