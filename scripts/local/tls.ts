// The local stack's certificates: a CA of its own and one server certificate per node and for the
// pooler, in `<stack>/tls/`. `up` issues what is missing, wrong or in its last 30 days
// (infra/topology/tls.ts decides) and leaves everything else untouched, so a no-op `up` writes nothing.
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import * as tls from "tls";
import { KeyPair, LOOPBACK_NAMES, ServerNames, caProblem, issueServerCert, newCa, serverCertProblem } from "../../infra/topology/tls";
import { LocalContext } from "./context";
import { caFile, tlsDir } from "./state";
import { chownToServer, waitFor } from "./system";

/** The servers with a certificate: the nodes (primary, replica-<i>) and the pooler. */
export type TlsServer = string;
export const POOLER_TLS_NAME = "pgbouncer";

export function certFile(ctx: LocalContext, server: TlsServer): string {
  return path.join(tlsDir(ctx.stack), `${server}.crt`);
}

export function keyFile(ctx: LocalContext, server: TlsServer): string {
  return path.join(tlsDir(ctx.stack), `${server}.key`);
}

const caKeyFile = (ctx: LocalContext) => path.join(tlsDir(ctx.stack), "ca.key");

function read(file: string): string | undefined {
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
}

/** Atomically, with its mode (and owner) in place before it appears under its name. */
function writeFile(file: string, content: string, mode: number, owner?: LocalContext["user"]): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode });
  fs.chmodSync(tmp, mode);
  if (owner) chownToServer(tmp, owner);
  fs.renameSync(tmp, file);
}

export function serverNames(ctx: LocalContext, server: TlsServer): ServerNames {
  return { name: `nbdb-${ctx.stack}-${server}`, ...LOOPBACK_NAMES };
}

export interface TlsConvergence {
  /** Servers whose certificate was (re)issued: running ones must reload it. */
  readonly issued: TlsServer[];
  readonly changes: string[];
}

/**
 * Make sure the CA and a good certificate for each server exist. The CA's key stays with whoever
 * runs nbdb (mode 0600); each server's key belongs to the server user (mode 0600, as PostgreSQL
 * demands); certificates are world-readable.
 */
export function convergeTls(ctx: LocalContext, servers: readonly TlsServer[], opts: { readonly renew?: boolean; readonly now?: Date } = {}): TlsConvergence {
  const now = opts.now ?? new Date();
  const dir = tlsDir(ctx.stack);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const changes: string[] = [];
  let ca: KeyPair = { cert: read(caFile(ctx.stack)) ?? "", key: read(caKeyFile(ctx)) ?? "" };
  const badCa = opts.renew ? "asked for with --renew-tls" : caProblem(ca, now);
  if (badCa) {
    ctx.log(`issuing the stack's CA (${badCa})`);
    ca = newCa(ctx.stack, now);
    writeFile(caKeyFile(ctx), ca.key, 0o600);
    writeFile(caFile(ctx.stack), ca.cert, 0o644);
    changes.push(`issued a new CA (${caFile(ctx.stack)}): ${badCa}`);
  }
  const issued: TlsServer[] = [];
  for (const server of servers) {
    const names = serverNames(ctx, server);
    const problem = serverCertProblem({ cert: read(certFile(ctx, server)), key: read(keyFile(ctx, server)) }, ca.cert, names, now);
    if (!problem) continue;
    const pair = issueServerCert(ca, names, now);
    // The key first: a crash between the two leaves a pair that does not match, which the next run re-issues.
    writeFile(keyFile(ctx, server), pair.key, 0o600, ctx.user);
    writeFile(certFile(ctx, server), pair.cert, 0o644, ctx.user);
    issued.push(server);
    changes.push(`issued the TLS certificate of ${server}: ${problem}`);
  }
  return { issued, changes };
}

/** A removed replica's certificate and key go with it. */
export function removeServerCert(ctx: LocalContext, server: TlsServer): void {
  fs.rmSync(certFile(ctx, server), { force: true });
  fs.rmSync(keyFile(ctx, server), { force: true });
}

/**
 * The certificate a PostgreSQL-protocol server (PostgreSQL or PgBouncer) on 127.0.0.1 presents: an
 * SSLRequest, then a handshake that accepts anything, since the point is to look at it.
 */
export function presentedCert(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("error", reject);
    socket.once("connect", () => socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    socket.once("data", (answer) => {
      if (answer.toString() !== "S") {
        socket.destroy();
        return reject(new Error(`the server on port ${port} does not offer TLS`));
      }
      const secure = tls.connect({ socket, rejectUnauthorized: false }, () => {
        const cert = secure.getPeerX509Certificate();
        secure.destroy();
        if (cert) resolve(cert);
        else reject(new Error(`the server on port ${port} presented no certificate`));
      });
      secure.once("error", reject);
    });
  });
}

/** A reload is asynchronous: wait until the server on `port` presents the certificate now in its file. */
export async function waitPresenting(ctx: LocalContext, server: TlsServer, port: number): Promise<void> {
  const wanted = new X509Certificate(fs.readFileSync(certFile(ctx, server))).serialNumber;
  await waitFor(`${server} to present its new certificate`, 15_000, async () => ((await presentedCert(port)).serialNumber === wanted ? true : undefined));
}
