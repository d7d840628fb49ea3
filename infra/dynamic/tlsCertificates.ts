// TlsCertificates: a Pulumi stack's own CA and its servers' certificates, issued by the same code as
// the local stack's (infra/topology/tls.ts), kept in the stack's state with every private key a
// secret. No provider plugin is needed (the TLS provider's binary cannot be had here): this is a
// dynamic resource, and its diff asks the same question as `nbdb up` (is the CA or a certificate
// missing, wrong, for other names or in its last 30 days?), so `pulumi up` renews a certificate
// before it expires and a no-op `pulumi up` changes nothing.
//
// It also writes the CA certificate (public) to `caFile` on the machine running `pulumi up`: the
// outputs' URLs name that file as their sslrootcert. A missing or different file is a diff, so the
// next `pulumi up` puts it back; elsewhere, `pulumi stack output tls` holds the same PEM.
//
// Like SqlBundle, the provider captures plain strings only (the module's path and tsconfig.json's)
// and requires the module inside each method.
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import type { ServerNames } from "../topology/tls";

export interface TlsCertificatesInputs {
  /** Names the CA (the stack). */
  readonly label: string;
  readonly servers: ServerNames[];
  /** Absolute path the CA certificate is written to. */
  readonly caFile: string;
}

export interface TlsCertificatesOutputs extends TlsCertificatesInputs {
  readonly caCert: string;
  /** A secret. */
  readonly caKey: string;
  /** Certificate per server name (PEM). */
  readonly serverCerts: Record<string, string>;
  /** Key per server name (PEM); a secret. */
  readonly serverKeys: Record<string, string>;
}

const TLS_MODULE = path.join(__dirname, "..", "topology", "tls");
const TSCONFIG = path.join(__dirname, "..", "..", "tsconfig.json");
export const TLS_SECRET_OUTPUTS = ["caKey", "serverKeys"];

export function tlsCertificatesProvider(tlsModule: string = TLS_MODULE, tsconfig: string = TSCONFIG): pulumi.dynamic.ResourceProvider {
  const load = (): typeof import("../topology/tls") => {
    if (!require.extensions[".ts"]) require("ts-node").register({ transpileOnly: true, project: tsconfig });
    return require(tlsModule);
  };
  const fileHolds = (file: string, content: string): boolean => {
    const fs = require("fs") as typeof import("fs");
    return fs.existsSync(file) && fs.readFileSync(file, "utf8") === content;
  };
  /** What must change, one reason per line; empty when everything is good as it is. */
  const problems = (olds: Partial<TlsCertificatesOutputs>, news: TlsCertificatesInputs): string[] => {
    const tls = load();
    const ca = tls.caProblem({ cert: olds.caCert, key: olds.caKey });
    if (ca) return [`CA: ${ca}`];
    const out: string[] = [];
    for (const s of news.servers) {
      const p = tls.serverCertProblem({ cert: olds.serverCerts?.[s.name], key: olds.serverKeys?.[s.name] }, olds.caCert!, s);
      if (p) out.push(`${s.name}: ${p}`);
    }
    if (olds.caFile !== news.caFile || !fileHolds(news.caFile, olds.caCert!)) out.push(`CA file ${news.caFile}: missing or different`);
    return out;
  };
  const converge = (olds: Partial<TlsCertificatesOutputs>, news: TlsCertificatesInputs): TlsCertificatesOutputs => {
    const tls = load();
    const fs = require("fs") as typeof import("fs");
    const keepCa = !tls.caProblem({ cert: olds.caCert, key: olds.caKey });
    const ca = keepCa ? { cert: olds.caCert!, key: olds.caKey! } : tls.newCa(news.label);
    const serverCerts: Record<string, string> = {};
    const serverKeys: Record<string, string> = {};
    for (const s of news.servers) {
      const old = { cert: olds.serverCerts?.[s.name], key: olds.serverKeys?.[s.name] };
      const pair = keepCa && !tls.serverCertProblem(old, ca.cert, s) ? (old as { cert: string; key: string }) : tls.issueServerCert(ca, s);
      serverCerts[s.name] = pair.cert;
      serverKeys[s.name] = pair.key;
    }
    fs.mkdirSync(require("path").dirname(news.caFile), { recursive: true });
    if (!fileHolds(news.caFile, ca.cert)) fs.writeFileSync(news.caFile, ca.cert, { mode: 0o644 });
    return { ...news, caCert: ca.cert, caKey: ca.key, serverCerts, serverKeys };
  };

  return {
    async create(inputs: TlsCertificatesInputs): Promise<pulumi.dynamic.CreateResult> {
      return { id: inputs.label, outs: converge({}, inputs) };
    },
    async diff(_id: pulumi.ID, olds: TlsCertificatesOutputs, news: TlsCertificatesInputs): Promise<pulumi.dynamic.DiffResult> {
      return { changes: problems(olds, news).length > 0 };
    },
    async update(_id: pulumi.ID, olds: TlsCertificatesOutputs, news: TlsCertificatesInputs): Promise<pulumi.dynamic.UpdateResult> {
      return { outs: converge(olds, news) };
    },
    // The certificates go with the state; the CA file stays for clients that still hold old URLs.
    async delete(): Promise<void> {},
  };
}

export interface TlsCertificatesArgs {
  readonly label: string;
  readonly servers: readonly ServerNames[];
  readonly caFile: string;
}

const provider = tlsCertificatesProvider();

export class TlsCertificates extends pulumi.dynamic.Resource {
  declare readonly caCert: pulumi.Output<string>;
  declare readonly serverCerts: pulumi.Output<Record<string, string>>;
  declare readonly serverKeys: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: TlsCertificatesArgs, opts?: pulumi.CustomResourceOptions) {
    const inputs = { label: args.label, servers: args.servers, caFile: args.caFile, caCert: undefined, caKey: undefined, serverCerts: undefined, serverKeys: undefined };
    super(provider, name, inputs, { ...opts, additionalSecretOutputs: [...TLS_SECRET_OUTPUTS] }, "neuralblitz", "TlsCertificates");
  }

  /** The certificate and key of one server, the key a secret. */
  pair(server: string): { cert: pulumi.Output<string>; key: pulumi.Output<string> } {
    return {
      cert: this.serverCerts.apply((c) => c[server]),
      key: pulumi.secret(this.serverKeys.apply((k) => k[server])),
    };
  }
}
