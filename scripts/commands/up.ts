// nbdb up: create or converge a local stack.
import { REPO_BUNDLE_DIR } from "../../infra/bundles/catalog";
import { up } from "../local/stack";
import { outputsFile } from "../local/state";
import { defineCommand, replicaCount } from "./command";

export default defineCommand({
  name: "up",
  description: "create or converge a local stack: primary, streaming replicas and PgBouncer (idempotent)",
  stack: {},
  options: [
    { flags: "--replicas <n>", help: "number of streaming replicas (default: 2 for a new stack, the current count for an existing one)", parse: replicaCount },
    { flags: "--bundles <dir>", help: "directory of SQL bundles to apply", default: REPO_BUNDLE_DIR },
    { flags: "--renew-tls", help: "issue a new CA and new certificates for every server now (e.g. after a key leaked); the CA file keeps its path" },
  ],
  run: (o: { stack: string; replicas?: number; bundles: string; renewTls?: boolean }, { log }) =>
    up({ stack: o.stack, replicas: o.replicas, bundles: o.bundles, renewTls: o.renewTls, log }),
  text(res, o, print) {
    if (res.changes.length === 0) print(`stack ${o.stack} is up to date: nothing changed.`);
    else for (const c of res.changes) print(`- ${c}`);
    const out = res.outputs;
    print(`primary   ${out.primary.host}:${out.primary.port}`);
    out.replicas.forEach((r, i) => print(`replica-${i} ${r.host}:${r.port}`));
    print(`pooler    ${out.pooler.host}:${out.pooler.port} (${out.pooler.poolMode} pooling)`);
    print(`connection strings (with passwords): ${outputsFile(o.stack)}`);
    if (out.tls) print(`TLS: verify-full against the stack's CA ${out.tls.caFile}`);
  },
});
