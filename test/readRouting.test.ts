// Read routing (issue 18 item 3): the readonly URL is the pooler's read-only entry, which spreads
// nb_readonly over every replica with PgBouncer's host list, follows `up --replicas N` with a reload,
// and falls back to the primary when there is no replica. Against a real stack and PgBouncer.
import { expect } from "chai";
import { randomUUID } from "crypto";
import { Client } from "pg";
import { NeuralBlitzDb } from "../client";
import { readonlyPoolDatabase } from "../client/outputs";
import { ROLE_TIMEOUT_DEFAULTS } from "../schema/roles";
import { localContext } from "../scripts/local/context";
import { poolerPid } from "../scripts/local/pooler";
import { up } from "../scripts/local/stack";
import { LocalStackOutputs, readDataKey } from "../scripts/local/state";
import { query, rejection, uniqueStack } from "./helpers";
import { expectCleanSession, leaveSessionState, sessionStateOf, waitForPoolReset } from "./sessionLeak";

const CLIENTS = 8;

async function connected(url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  c.on("error", () => undefined);
  await c.connect();
  return c;
}

/**
 * The nodes CLIENTS concurrent clients of the readonly URL land on: each holds a transaction open,
 * so the pooler needs CLIENTS server connections and opens new ones, each on the next host.
 */
async function nodesServing(url: string): Promise<{ node: string; inRecovery: boolean }[]> {
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connected(url)));
  try {
    await Promise.all(clients.map((c) => c.query("BEGIN READ ONLY")));
    const rows = await Promise.all(
      clients.map(async (c) => (await c.query("SELECT current_setting('cluster_name') AS node, pg_is_in_recovery() AS r")).rows[0] as { node: string; r: boolean }),
    );
    await Promise.all(clients.map((c) => c.query("COMMIT")));
    return rows.map((r) => ({ node: r.node, inRecovery: r.r }));
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

describe("read routing: the pooler's read-only entry over the replicas", function () {
  this.timeout(600_000);
  const stack = uniqueStack("reads");
  const node = (n: string) => `nbdb-${stack}-${n}`;
  let out: LocalStackOutputs;
  let dataKey: string;

  before(async function () {
    out = (await up({ stack, replicas: 2 })).outputs;
    dataKey = readDataKey(stack);
  });

  it("names the pooler's read-only entry as the readonly URL, verified TLS", function () {
    const u = new URL(out.connections.readonly);
    expect([u.username, u.port, u.pathname]).to.deep.equal(["nb_readonly", String(out.pooler.port), `/${readonlyPoolDatabase(out.database)}`]);
    expect(u.searchParams.get("sslmode")).to.equal("verify-full");
  });

  it("spreads reads over every replica, never the primary, and looks up logins on the replicas", async function () {
    const seen = await nodesServing(out.connections.readonly);
    expect(seen.every((s) => s.inRecovery), JSON.stringify(seen)).to.equal(true);
    expect([...new Set(seen.map((s) => s.node))].sort()).to.deep.equal([node("replica-0"), node("replica-1")]);
    // The auth_query ran on the replicas (read-only, on a hot standby): the pooler keeps its lookup connection there.
    const lookups = await Promise.all(
      out.replicas.map(async (r) => {
        const u = new URL(out.connections.admin);
        u.port = String(r.port);
        return (await query<{ n: number }>(u.toString(), "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'nb_pgbouncer'"))[0].n;
      }),
    );
    expect(lookups.reduce((a, b) => a + b, 0), "nb_pgbouncer's lookup connections on the replicas").to.be.greaterThan(0);
  });

  it("refuses nb_readonly any write through the readonly URL", async function () {
    const msg = await rejection(query(out.connections.readonly, "INSERT INTO neuralblitz.metrics (ts, name, value, source) VALUES (now(), 'ro_probe', 1, 'test')"));
    expect(msg).to.match(/read-only transaction|permission denied/);
    expect(await rejection(query(out.connections.readonly, "CREATE TABLE neuralblitz.ro_probe (x int)"))).to.match(/read-only transaction|permission denied/);
  });

  it("leaves nothing of a client's session-level state to later clients of the read-only entry", async function () {
    const victim = randomUUID();
    const attacker = await connected(out.connections.readonly);
    let attackerConnection: string;
    try {
      attackerConnection = await leaveSessionState(attacker, victim, dataKey, { standby: true });
    } finally {
      await attacker.end();
    }
    const connections = new Set<string>();
    for (let i = 0; i < 30; i++) {
      await waitForPoolReset(stack, readonlyPoolDatabase(out.database));
      const c = await connected(out.connections.readonly);
      try {
        const s = await sessionStateOf(c);
        connections.add(s.connection);
        expectCleanSession(s, ROLE_TIMEOUT_DEFAULTS.nb_readonly.statementMs, `client ${i}`);
      } finally {
        await c.end();
      }
    }
    expect([...connections], "a later client reused the attacker's server connection").to.include(attackerConnection!);
  });

  it("drops a removed replica from the entry with a reload (the pooler keeps running), and uses the primary without replicas", async function () {
    const ctx = localContext(stack, () => undefined);
    const pid = poolerPid(ctx);
    const fewer = await up({ stack, replicas: 1, bundles: false });
    expect(fewer.changes).to.include("reloaded pgbouncer's settings").and.to.include("removed replica-1");
    expect(poolerPid(ctx), "the pooler was reloaded, not restarted").to.equal(pid);
    for (let round = 0; round < 3; round++) {
      expect([...new Set((await nodesServing(fewer.outputs.connections.readonly)).map((s) => s.node))]).to.deep.equal([node("replica-0")]);
    }
    const none = await up({ stack, replicas: 0, bundles: false });
    expect(poolerPid(ctx)).to.equal(pid);
    const seen = await nodesServing(none.outputs.connections.readonly);
    expect(seen.map((s) => [s.node, s.inRecovery])).to.deep.equal(Array(CLIENTS).fill([node("primary"), false]));
    expect(none.outputs.connections.readonly, "the readonly URL does not change with the replicas").to.equal(out.connections.readonly);
    expect(await rejection(query(none.outputs.connections.readonly, "DELETE FROM neuralblitz.metrics"))).to.match(/permission denied/);
  });

  it("takes an added replica into the entry, and the client reads through it", async function () {
    const ctx = localContext(stack, () => undefined);
    const pid = poolerPid(ctx);
    const more = await up({ stack, replicas: 2, bundles: false });
    expect(poolerPid(ctx)).to.equal(pid);
    const seen = await nodesServing(more.outputs.connections.readonly);
    expect([...new Set(seen.map((s) => s.node))].sort()).to.deep.equal([node("replica-0"), node("replica-1")]);
    const db = new NeuralBlitzDb({ outputs: more.outputs, dataKey, max: 2 });
    try {
      const inRecovery = await db.withUser(randomUUID(), async (tx) => (await tx.query("SELECT pg_is_in_recovery() AS r")).rows[0].r as boolean, { readOnly: true });
      expect(inRecovery).to.equal(true);
    } finally {
      await db.close();
    }
  });
});
