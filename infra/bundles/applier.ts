// The bundle applier, used alike by `nbdb up` / `nbdb plan` and by the SqlBundle dynamic provider.
// It connects straight to the primary as nb_migrator (never through PgBouncer: it needs a session
// for its lock), takes the deploy lock, refuses the whole deploy if any bundle is refused, then
// applies each pending bundle and records it in the ledger, stopping at the first failure.
// Transactional bundles run as one simple query inside BEGIN ... COMMIT with their ledger row, so a
// failure or an interruption leaves the database as it was before the bundle, and PostgreSQL's
// error position is an offset into the file.
import { Client, Query } from "pg";
import { version as TOOL_VERSION } from "../../package.json";
import { Bundle } from "./catalog";
import { BundleError, isPgError, sqlErrorInBundle } from "./errors";
import { readLedger, recordApplication } from "./ledger";
import { acquireDeployLock } from "./lock";
import { PlanEntry, pendingOf, planBundles } from "./plan";
import { indexOfPosition, splitStatements } from "./sqlSplit";

export const DEPLOY_APPLICATION_NAME = "nbdb-deploy";
export const DEFAULT_DEPLOY_LOCK_TIMEOUT_MS = 5 * 60_000;
/** How long in all a bundle may wait for the locks it needs (the deploy's limit). */
export const DEFAULT_OBJECT_LOCK_TIMEOUT = "30s";
/**
 * How long one try waits for a lock. While a DDL statement waits for its lock, every later query on
 * that table queues behind it: so a bundle waits this long at most, rolls back, lets the queue
 * drain, and tries again (backing off), until DEFAULT_OBJECT_LOCK_TIMEOUT is spent.
 */
export const LOCK_TRY_TIMEOUT_MS = 200;
const LOCK_RETRY_PAUSE_MS = [100, 200, 400, 800, 1600, 2000];
const OBJECT_OWNER = "nb_owner";

// The SqlBundle provider reaches the engine through this module alone.
export { editedMigrationMessage } from "./plan";

export interface DeployTarget {
  /** postgresql:// URL of the primary, as nb_migrator. */
  readonly url: string;
  readonly log?: (line: string) => void;
  /** How long to wait for another deploy of the same database before giving up. */
  readonly deployLockTimeoutMs?: number;
  /**
   * How long in all a bundle waits for the locks it needs, e.g. "30s" (tries of LOCK_TRY_TIMEOUT_MS
   * with pauses between), so a deploy never waits forever behind the application, nor makes the
   * application wait behind it for longer than one try.
   */
  readonly objectLockTimeout?: string;
}

export interface AppliedBundle {
  readonly name: string;
  readonly kind: Bundle["kind"];
  readonly file: string;
  /** 'new', or 'changed' for a repeatable bundle applied again. */
  readonly status: "new" | "changed";
  readonly durationMs: number;
}

async function connect(target: DeployTarget): Promise<Client> {
  const client = new Client({ connectionString: target.url, application_name: DEPLOY_APPLICATION_NAME });
  // A connection lost while idle is reported by the next query; without a listener it would crash the process.
  client.on("error", () => undefined);
  await client.connect().catch((e: Error) => {
    const u = new URL(target.url);
    throw new BundleError(
      `cannot connect to ${u.hostname}:${u.port || 5432}${u.pathname} as ${decodeURIComponent(u.username)} to apply SQL bundles: ${e.message}. ` +
        `Check that the primary is up and reachable directly (not through PgBouncer), e.g. for the local stack: npx nbdb status`,
    );
  });
  // client_connection_check_interval: a deploy killed mid-bundle has its statement cancelled and its
  // transaction rolled back within a second, instead of holding its locks until the statement ends.
  await client.query(
    `SELECT pg_catalog.set_config('statement_timeout', '0', false),
            pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false),
            pg_catalog.set_config('client_connection_check_interval', '1s', false),
            pg_catalog.set_config('lock_timeout', $1, false)`,
    [`${LOCK_TRY_TIMEOUT_MS}ms`],
  );
  return client;
}

/** "30s", "500ms", "2min" or a number of milliseconds (PostgreSQL's spelling of lock_timeout). */
export function durationMs(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*$/.exec(text);
  if (!m) throw new BundleError(`objectLockTimeout '${text}' is not a duration: write it like 30s, 500ms or 2min.`);
  return Number(m[1]) * { ms: 1, s: 1000, min: 60_000 }[m[2] ?? "ms"]!;
}

/** A bundle's statement did not get its lock within one try (SQLSTATE 55P03); the bundle was rolled back. */
class LockTry extends Error {}

interface Blocker {
  pid: number;
  application_name: string | null;
  usename: string | null;
  state: string | null;
  xact_start: Date | null;
}

function describeBlocker(b: Blocker): string {
  const since = b.xact_start ? `, in a transaction since ${b.xact_start.toISOString()}` : "";
  return `pid ${b.pid} (application '${b.application_name || "?"}', user ${b.usename ?? "?"}${b.state ? `, ${b.state}` : ""}${since})`;
}

/**
 * Watches, on a connection of its own, which sessions block the deploy's session, so that the
 * error after the last try can name them (by then the waiting statement is gone).
 */
class BlockerWatch {
  private last: Blocker[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(target: DeployTarget, deployPid: number) {
    this.done = this.watch(target, deployPid).catch(() => undefined);
  }

  private async watch(target: DeployTarget, deployPid: number): Promise<void> {
    const c = new Client({ connectionString: target.url, application_name: `${DEPLOY_APPLICATION_NAME}-watch` });
    c.on("error", () => undefined);
    await c.connect();
    try {
      while (!this.stopped) {
        const r = await c.query<Blocker>(
          `SELECT a.pid, a.application_name, a.usename, a.state, a.xact_start
             FROM pg_catalog.pg_stat_activity a
            WHERE a.pid = ANY (pg_catalog.pg_blocking_pids($1)) ORDER BY a.pid`,
          [deployPid],
        );
        if (r.rows.length > 0) this.last = r.rows;
        await new Promise((res) => setTimeout(res, LOCK_TRY_TIMEOUT_MS / 4));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async stop(): Promise<Blocker[]> {
    this.stopped = true;
    await this.done;
    return this.last;
  }
}

/** Run one bundle, trying again while it only lacks a lock, up to the deploy's limit. */
async function withLockRetries(target: DeployTarget, client: Client, bundle: Bundle, log: (line: string) => void, apply: () => Promise<number>): Promise<number> {
  const limitMs = durationMs(target.objectLockTimeout ?? DEFAULT_OBJECT_LOCK_TIMEOUT);
  const started = Date.now();
  let watch: BlockerWatch | undefined;
  let tries = 0;
  try {
    for (;;) {
      tries++;
      try {
        return await apply();
      } catch (e) {
        if (!(e instanceof LockTry)) throw e;
      }
      if (!watch) {
        const [{ pid }] = (await client.query<{ pid: number }>("SELECT pg_catalog.pg_backend_pid() AS pid")).rows;
        watch = new BlockerWatch(target, pid);
        log(`${bundle.file}: another session holds a lock it needs; trying again (each try waits at most ${LOCK_TRY_TIMEOUT_MS} ms, for ${Math.round(limitMs / 1000)} s in all)`);
      }
      const pause = LOCK_RETRY_PAUSE_MS[Math.min(tries - 1, LOCK_RETRY_PAUSE_MS.length - 1)];
      if (Date.now() - started + pause >= limitMs) break;
      await new Promise((res) => setTimeout(res, pause));
    }
    const blockers = await watch!.stop();
    watch = undefined;
    const who = blockers.length ? blockers.map(describeBlocker).join(", ") : "another session (it let go before it could be named)";
    const end = blockers.length ? blockers.map((b) => `SELECT pg_terminate_backend(${b.pid})`).join("; ") : "SELECT pg_terminate_backend(<pid>)";
    throw new BundleError(
      `${bundle.file}: could not get a lock it needs within ${Math.round(limitMs / 1000)} s (${tries} tries of at most ${LOCK_TRY_TIMEOUT_MS} ms each, so the application never queued behind it for longer): ` +
        `it is held by ${who}. The file is not at fault and nothing of it was applied (the ledger is unchanged). ` +
        `Let that session finish, or end it (${end}), then run the deploy again.`,
    );
  } finally {
    await watch?.stop();
  }
}

async function withConnection<T>(target: DeployTarget, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await connect(target);
  try {
    return await fn(client);
  } finally {
    // Ending the session also releases the deploy lock.
    await client.end().catch(() => undefined);
  }
}

/** What a deploy of `bundles` would do now. Reads the ledger only; takes no lock, changes nothing. */
export async function planDeploy(target: DeployTarget, bundles: readonly Bundle[]): Promise<PlanEntry[]> {
  return withConnection(target, async (client) => planBundles(bundles, await readLedger(client)));
}

/** Apply every pending bundle in order; returns what was applied (nothing when all are up to date). */
export async function applyBundles(target: DeployTarget, bundles: readonly Bundle[]): Promise<AppliedBundle[]> {
  const log = target.log ?? (() => undefined);
  return withConnection(target, async (client) => {
    const lock = await acquireDeployLock(client, target.deployLockTimeoutMs ?? DEFAULT_DEPLOY_LOCK_TIMEOUT_MS, log, () => connect(target));
    try {
      const plan = planBundles(bundles, await readLedger(client));
      const refused = plan.filter((e) => e.status === "refused");
      if (refused.length > 0) throw new BundleError(`${refused.map((e) => e.reason).join("\n")}\nNothing was applied.`);
      const applied: AppliedBundle[] = [];
      for (const { bundle, status } of pendingOf(plan)) {
        log(`applying ${bundle.file}${status === "changed" ? " (changed since it was applied)" : ""}`);
        try {
          const durationMs = await withLockRetries(target, client, bundle, log, () =>
            bundle.transactional ? applyInTransaction(client, bundle) : applyStatementByStatement(client, bundle),
          );
          applied.push({ name: bundle.name, kind: bundle.kind, file: bundle.file, status: status as AppliedBundle["status"], durationMs });
          await lock.upgrade();
        } catch (e) {
          if (applied.length > 0 && e instanceof Error) e.message += `\nApplied and recorded before it: ${applied.map((a) => a.name).join(", ")}.`;
          throw e;
        }
      }
      return applied;
    } finally {
      await lock.release();
    }
  });
}

interface QueryHandlers {
  handleCommandComplete(message: unknown, connection: unknown): void;
}

/** A simple query that counts its finished statements, to tell which one failed when PostgreSQL gives no position. */
class StatementCountingQuery extends Query {
  completedStatements = 0;

  handleCommandComplete(message: unknown, connection: unknown): void {
    this.completedStatements++;
    (Query.prototype as unknown as QueryHandlers).handleCommandComplete.call(this, message, connection);
  }
}

function run(client: Client, query: Query): Promise<void> {
  return new Promise((resolve, reject) => {
    query.on("end", () => resolve());
    query.on("error", reject);
    client.query(query);
  });
}

// Class 08 (connection exception) and 57 (operator intervention: terminated, server shutting down).
const INTERRUPTION = /^(08|57)/;

type Locate = (position: number | undefined) => { index: number; exact: boolean };

/** A failure outside the bundle's own SQL: the connection was lost, or one of the applier's statements failed. */
function stepFailure(bundle: Bundle, step: string, err: unknown): BundleError {
  if (err instanceof BundleError) return err;
  const message = (err as Error).message;
  if (!isPgError(err) || INTERRUPTION.test(err.code!)) {
    const what = bundle.transactional
      ? "The server rolled its transaction back, so the database is as it was before this bundle and the ledger is unchanged"
      : "It ran outside a transaction, so the statements before the interruption stay applied; its ledger row was not written";
    return new BundleError(`${bundle.file}: the deploy was interrupted while applying it (${message}). ${what}. Run the deploy again to apply it.`);
  }
  return new BundleError(`${bundle.file}: ${step} failed: ${message}${err.code ? ` (SQLSTATE ${err.code})` : ""}. Nothing of this bundle was recorded; fix the cause and run again.`);
}

/** A failure of the bundle's own SQL, located in its file. */
function sqlFailure(bundle: Bundle, err: unknown, locate: Locate): Error {
  if (!isPgError(err) || INTERRUPTION.test(err.code!)) return stepFailure(bundle, "applying it", err);
  if (err.code === "55P03") return new LockTry(err.message);
  return sqlErrorInBundle(bundle, err, locate(err.position ? Number(err.position) : undefined));
}

const LEDGER_STEP = "recording it in neuralblitz.bundle_ledger (created by the first migration, V001__bundle_ledger.sql)";

async function applyInTransaction(client: Client, bundle: Bundle): Promise<number> {
  // SET LOCAL: the role and search_path end with the transaction, and are set again before the
  // ledger row in case the bundle changed them. search_path = pg_catalog makes every project name
  // in a bundle schema-qualified, or an error.
  const asOwner = `SET LOCAL ROLE ${OBJECT_OWNER}; SET LOCAL search_path = pg_catalog`;
  const query = new StatementCountingQuery(bundle.sql);
  const locate: Locate = (position) => {
    if (position !== undefined) return { index: indexOfPosition(bundle.sql, position), exact: true };
    const statements = splitStatements(bundle.sql);
    const failed = statements[Math.min(query.completedStatements, statements.length - 1)];
    return { index: failed?.offset ?? 0, exact: false };
  };
  try {
    await client.query("BEGIN").catch((e) => Promise.reject(stepFailure(bundle, "BEGIN", e)));
    await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET LOCAL ROLE ${OBJECT_OWNER}`, e)));
    const started = performance.now();
    await run(client, query).catch((e) => Promise.reject(sqlFailure(bundle, e, locate)));
    const durationMs = performance.now() - started;
    await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET LOCAL ROLE ${OBJECT_OWNER}`, e)));
    await recordApplication(client, bundle, durationMs, TOOL_VERSION).catch((e) => Promise.reject(stepFailure(bundle, LEDGER_STEP, e)));
    await client.query("COMMIT").catch((e) => Promise.reject(stepFailure(bundle, "COMMIT", e)));
    return durationMs;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

/** For bundles declared `-- nbdb:no-transaction`: each statement on its own; the ledger row only after all succeeded. */
async function applyStatementByStatement(client: Client, bundle: Bundle): Promise<number> {
  // Session-level SET is safe here: this connection is direct, never pooled, and ends with the deploy.
  const asOwner = `SET ROLE ${OBJECT_OWNER}; SET search_path = pg_catalog`;
  await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET ROLE ${OBJECT_OWNER}`, e)));
  const started = performance.now();
  try {
    for (const statement of splitStatements(bundle.sql)) {
      await client.query(statement.text).catch((e) =>
        Promise.reject(
          sqlFailure(bundle, e, (position) =>
            position !== undefined ? { index: statement.offset + indexOfPosition(statement.text, position), exact: true } : { index: statement.offset, exact: false },
          ),
        ),
      );
    }
    const durationMs = performance.now() - started;
    await client.query(asOwner).catch((e) => Promise.reject(stepFailure(bundle, `SET ROLE ${OBJECT_OWNER}`, e)));
    await recordApplication(client, bundle, durationMs, TOOL_VERSION).catch((e) => Promise.reject(stepFailure(bundle, LEDGER_STEP, e)));
    return durationMs;
  } finally {
    await client.query("RESET ROLE; RESET search_path").catch(() => undefined);
  }
}
