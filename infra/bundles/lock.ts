// The deploy lock: a session advisory lock on the applier's own direct connection, so two deploys
// of one database never interleave. The server releases it when that session ends for any reason
// (finished, killed, connection cut), so a dead deploy never leaves it behind.
import type { ClientBase } from "pg";
import { BundleError } from "./errors";

// Two-key form, so pg_locks shows it as classid/objid with objsubid = 2: 'nbdb', 1 = bundles.
const LOCK_KEYS: [number, number] = [0x6e626462, 1];
const POLL_MS = 250;
const REPORT_EVERY_MS = 30_000;

interface LockHolder {
  pid: number;
  application_name: string;
  usename: string | null;
  backend_start: Date | null;
  state: string | null;
}

async function holder(client: ClientBase): Promise<LockHolder | undefined> {
  const r = await client.query<LockHolder>(
    `SELECT a.pid, a.application_name, a.usename, a.backend_start, a.state
       FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())`,
    LOCK_KEYS,
  );
  return r.rows[0];
}

function describe(h: LockHolder | undefined): string {
  if (!h) return "a session that just let go of it";
  const since = h.backend_start ? `, connected since ${h.backend_start.toISOString()}` : "";
  return `pid ${h.pid} (application '${h.application_name || "?"}', user ${h.usename ?? "?"}${since}, ${h.state ?? "state unknown"})`;
}

/** Take the deploy lock, waiting up to `timeoutMs` for another deploy to finish. */
export async function acquireDeployLock(client: ClientBase, timeoutMs: number, log: (line: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let nextReport = 0;
  for (;;) {
    const r = await client.query("SELECT pg_catalog.pg_try_advisory_lock($1, $2) AS locked", LOCK_KEYS);
    if (r.rows[0].locked) return;
    const h = await holder(client);
    if (Date.now() >= deadline) {
      throw new BundleError(
        `another deploy still holds the bundle lock after ${Math.round(timeoutMs / 1000)} s: ${describe(h)}. ` +
          `Let it finish and run again; if that deploy is gone but its session lingers, end it with SELECT pg_terminate_backend(${h?.pid ?? "<pid>"}) and run again.`,
      );
    }
    if (Date.now() >= nextReport) {
      log(`waiting for another deploy to finish: ${describe(h)} holds the bundle lock (giving up in ${Math.ceil((deadline - Date.now()) / 1000)} s)`);
      nextReport = Date.now() + REPORT_EVERY_MS;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
