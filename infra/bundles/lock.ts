// The deploy lock, so two deploys of one database never interleave. It is the row 'deploy' of
// neuralblitz.platform_locks (V020), locked through take_platform_lock() (R012) by a transaction held
// open on a connection of its own for the whole deploy: nb_app has no privilege on that table, so
// unlike an advisory lock (any role may take any key) the application can neither take nor hold it.
// The server releases it when that session ends for any reason (finished, killed, connection cut),
// so a dead deploy never leaves it behind. A database that has no platform_locks yet (a first deploy)
// is locked with a session advisory lock until the bundles have created it.
import type { Client, ClientBase } from "pg";
import { BundleError } from "./errors";

// Two-key form, so pg_locks shows it as classid/objid with objsubid = 2: 'nbdb', 1 = bundles.
const LOCK_KEYS: [number, number] = [0x6e626462, 1];
const POLL_MS = 250;
const REPORT_EVERY_MS = 30_000;
/** Each attempt waits this long in the server, so progress can be reported between attempts. */
const ATTEMPT_WAIT = "1 second";
const HAS_PLATFORM_LOCKS = "SELECT pg_catalog.to_regprocedure('neuralblitz.take_platform_lock(text,interval)') IS NOT NULL AS present";

interface LockHolder {
  pid: number;
  application_name: string;
  usename: string | null;
  backend_start: Date | null;
  state: string | null;
}

async function advisoryHolder(client: ClientBase): Promise<LockHolder | undefined> {
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

/** The deploy lock while held. */
export interface DeployLock {
  /** After each bundle: on a first deploy, move to the row lock once the bundles created it. */
  upgrade(): Promise<void>;
  /** Ends the lock's transaction and connection (the advisory form ends with the deploy's session). */
  release(): Promise<void>;
}

async function waitLoop(timeoutMs: number, log: (line: string) => void, attempt: () => Promise<string | undefined>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let nextReport = 0;
  for (;;) {
    const holder = await attempt();
    if (holder === undefined) return;
    if (Date.now() >= deadline) {
      const pid = /pid (\d+)/.exec(holder)?.[1] ?? "<pid>";
      throw new BundleError(
        `another deploy still holds the bundle lock after ${Math.round(timeoutMs / 1000)} s: ${holder}. ` +
          `Let it finish and run again; if that deploy is gone but its session lingers, end it with SELECT pg_terminate_backend(${pid}) and run again.`,
      );
    }
    if (Date.now() >= nextReport) {
      log(`waiting for another deploy to finish: ${holder} holds the bundle lock (giving up in ${Math.ceil((deadline - Date.now()) / 1000)} s)`);
      nextReport = Date.now() + REPORT_EVERY_MS;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Lock the row 'deploy' in a transaction on `side`; undefined when taken, else who holds it. */
async function tryRowLock(side: Client): Promise<string | undefined> {
  await side.query("BEGIN");
  try {
    await side.query("SELECT neuralblitz.take_platform_lock('deploy', $1)", [ATTEMPT_WAIT]);
    return undefined;
  } catch (e) {
    await side.query("ROLLBACK");
    if ((e as { code?: string }).code !== "55P03") throw e;
    // take_platform_lock names the holder: pid, role, application, since.
    return (e as Error).message.replace(/^the deploy lock is still held after \S+: /, "");
  }
}

/**
 * Take the deploy lock, waiting up to `timeoutMs` for another deploy to finish. `client` is the
 * deploy's own session; `openSide` opens the connection that holds the row lock.
 */
export async function acquireDeployLock(client: ClientBase, timeoutMs: number, log: (line: string) => void, openSide: () => Promise<Client>): Promise<DeployLock> {
  let side: Client | undefined;
  let lost: Error | undefined;
  const takeRowLock = async (): Promise<void> => {
    side = await openSide();
    side.on("error", (e: Error) => (lost = e));
    await waitLoop(timeoutMs, log, () => tryRowLock(side!));
  };
  const release = async (): Promise<void> => {
    if (!side) return;
    await side.query("ROLLBACK").catch(() => undefined);
    await side.end().catch(() => undefined);
    side = undefined;
  };
  let advisory = false;
  if ((await client.query(HAS_PLATFORM_LOCKS)).rows[0].present) {
    await takeRowLock();
  } else {
    await waitLoop(timeoutMs, log, async () => {
      const r = await client.query("SELECT pg_catalog.pg_try_advisory_lock($1, $2) AS locked", LOCK_KEYS);
      return r.rows[0].locked ? undefined : describe(await advisoryHolder(client));
    });
    advisory = true;
  }
  return {
    async upgrade() {
      if (lost) throw new BundleError(`the connection holding the deploy lock was lost (${lost.message}); run the deploy again.`);
      if (!advisory || !(await client.query(HAS_PLATFORM_LOCKS)).rows[0].present) return;
      // Deploys that start from now on take the row lock: hold it too before going on.
      await takeRowLock();
      await client.query("SELECT pg_catalog.pg_advisory_unlock($1, $2)", LOCK_KEYS);
      advisory = false;
    },
    release,
  };
}
