// The local stack's side of pgBackRest, run by `up` and `status`: the stanza, its config and the
// backup role kept as they should be, the end of a restore (promotion, new passwords), and whether
// WAL reaches the repository. The commands (`nbdb backup`, `backup list`, `restore`) are
// scripts/ops/backup.ts. pgBackRest runs as the server user and connects as nb_backup.
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { withTransaction } from "../db";
import { BACKUP_ROLE, backupRoleSql, renderPgbackrestConf } from "../../infra/topology/pgbackrest";
import { scramSha256Verifier } from "../../infra/topology/scram";
import { LOGIN_ROLES, ident } from "../../schema/roles";
import { LocalContext } from "./context";
import { backupPaths, pgbackrestBin, requirePgbackrest } from "./pgbackrest";
import { dataDir, ensureServerDir, logFile, runningPid, withSuperuser } from "./postgresNode";
import { HOST, SUPERUSER, StackState, caFile, newState, saveState, writePrivate } from "./state";
import { RunResult, chownToServer, run, sleep } from "./system";

function writeServerFile(ctx: LocalContext, file: string, content: string): boolean {
  if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === content) return false;
  fs.writeFileSync(file, content, { mode: 0o600 });
  chownToServer(file, ctx.user);
  return true;
}

export function runPgbackrest(ctx: LocalContext, args: readonly string[], timeoutMs = 6 * 60 * 60_000): Promise<RunResult> {
  const p = backupPaths(ctx);
  return run(requirePgbackrest(), [`--config=${p.config}`, `--stanza=${ctx.stack}`, ...args], {
    as: ctx.user,
    // pgBackRest reaches the primary over TCP as nb_backup, over TLS verified against the stack's CA.
    env: { PGHOST: HOST, PGPASSFILE: p.pgpass, PGSSLMODE: "verify-full", PGSSLROOTCERT: caFile(ctx.stack) },
    timeoutMs,
  });
}

export function backupPassword(ctx: LocalContext): string | undefined {
  const file = backupPaths(ctx).pgpass;
  if (!fs.existsSync(file)) return undefined;
  return fs.readFileSync(file, "utf8").trim().split(":").slice(4).join(":") || undefined;
}

/**
 * Part of `up` (after the primary): the config, the backup role and the stanza, each only when
 * missing or changed. Nothing (and no change) where pgBackRest is not installed.
 */
export async function ensureBackup(ctx: LocalContext, state: StackState): Promise<string[]> {
  const changes: string[] = [];
  const restored = await finishRestore(ctx, state);
  if (restored) changes.push(restored);
  if (!pgbackrestBin()) return changes;
  const p = backupPaths(ctx);
  // A repository root of its own (NBDB_BACKUP_ROOT) must be traversable by the server user.
  if (!fs.existsSync(path.dirname(p.repo))) fs.mkdirSync(path.dirname(p.repo), { recursive: true, mode: 0o755 });
  for (const d of [p.dir, p.lock, p.spool, p.log, p.repo]) ensureServerDir(ctx, d);
  let password = backupPassword(ctx);
  const newPassword = !password;
  if (!password) {
    password = randomBytes(24).toString("base64url");
    writeServerFile(ctx, p.pgpass, `*:*:*:${BACKUP_ROLE}:${password}\n`);
  }
  await withSuperuser(state, state.ports.primary, async (c) => {
    const exists = (await c.query("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", [BACKUP_ROLE])).rowCount === 1;
    if (exists && !newPassword) return;
    await c.query(backupRoleSql(scramSha256Verifier(password!)));
    changes.push(`${exists ? "set the password of" : "created"} the backup role ${BACKUP_ROLE}`);
  });
  const conf = renderPgbackrestConf({
    stanza: ctx.stack,
    repoPath: p.repo,
    logPath: p.log,
    lockPath: p.lock,
    spoolPath: p.spool,
    pgPath: dataDir(ctx, "primary"),
    pgPort: state.ports.primary,
  });
  if (writeServerFile(ctx, p.config, conf)) changes.push("wrote pgBackRest's configuration");
  if (!fs.existsSync(path.join(p.repo, "backup", ctx.stack, "backup.info"))) {
    ctx.log(`creating the pgBackRest stanza ${ctx.stack} in ${p.repo}`);
    await runPgbackrest(ctx, ["stanza-create"], 120_000);
    changes.push(`created the backup repository (pgBackRest stanza ${ctx.stack}) in ${p.repo}`);
  }
  return changes;
}

/** Present from the end of the file copy until the restored primary is promoted and its passwords rotated. */
export const restorePendingFile = (ctx: LocalContext) => path.join(ctx.dir, "restore-pending.json");

interface PendingRestore {
  readonly source: string;
  readonly to: string;
  /** The new passwords, written before they are set on the roles. */
  readonly passwords?: StackState["passwords"];
}

async function canConnect(state: StackState, passwords: StackState["passwords"]): Promise<boolean> {
  return withSuperuser({ ...state, passwords }, state.ports.primary, async () => true).catch(() => false);
}

/**
 * The end of a restore, run by `up` on the restored stack once its primary is started: wait for
 * recovery to reach the target and promote, clear pgBackRest's recovery settings, and give every
 * login role (and the superuser) a new password, so that the copy shares no credential with its
 * source. Interrupted anywhere, the next `up` picks it up again.
 */
async function finishRestore(ctx: LocalContext, state: StackState): Promise<string | undefined> {
  if (!fs.existsSync(restorePendingFile(ctx))) return undefined;
  const pending = JSON.parse(fs.readFileSync(restorePendingFile(ctx), "utf8")) as PendingRestore;
  if (pending.passwords && (await canConnect(state, pending.passwords))) {
    // The rotation committed, but the state was not saved yet.
    state.passwords = pending.passwords;
  } else {
    ctx.log(`recovering to ${pending.to}`);
    for (;;) {
      if (!runningPid(ctx, "primary")) {
        throw new Error(`the restored primary stopped during recovery (was ${pending.to} reached by the archived WAL?); see ${logFile(ctx, "primary")}`);
      }
      const inRecovery = await withSuperuser(state, state.ports.primary, async (c) => (await c.query("SELECT pg_catalog.pg_is_in_recovery() AS r")).rows[0].r as boolean).catch(() => true);
      if (!inRecovery) break;
      await sleep(200);
    }
    const fresh = newState(state.stack, { primary: 0, pooler: 0 }).passwords;
    writePrivate(restorePendingFile(ctx), JSON.stringify({ ...pending, passwords: fresh }) + "\n");
    await withSuperuser(state, state.ports.primary, async (c) => {
      // pgBackRest's recovery settings (restore_command reads the source's repository); nbdb keeps
      // its own settings in nbdb.conf, never in postgresql.auto.conf.
      await c.query("ALTER SYSTEM RESET ALL");
      await c.query("SELECT pg_catalog.pg_reload_conf()");
      await withTransaction(c, async () => {
        for (const role of [SUPERUSER, ...LOGIN_ROLES] as const) await c.query(`ALTER ROLE ${ident(role)} PASSWORD '${scramSha256Verifier(fresh[role])}'`);
      });
    });
    state.passwords = fresh;
  }
  saveState(state);
  fs.rmSync(restorePendingFile(ctx));
  return `finished the restore from stack ${pending.source} as of ${pending.to}: promoted, new passwords for every role`;
}

export interface ArchiveStatus {
  readonly archiving: boolean;
  readonly archivedCount: number;
  readonly lastArchivedWal: string | null;
  readonly lastArchivedAt: string | null;
  readonly failedCount: number;
  readonly lastFailedWal: string | null;
  readonly lastFailedAt: string | null;
  /** WAL segments finished but not yet in the repository (pg_wal grows by 16 MB each). */
  readonly walWaiting: number;
  /** True when the last attempt failed: the repository is unreachable or refuses the WAL. */
  readonly failing: boolean;
}

/** For `nbdb status`: is WAL reaching the repository, and how much waits. */
export async function archiveStatus(state: StackState): Promise<ArchiveStatus> {
  return withSuperuser(state, state.ports.primary, async (c) => {
    const r = (
      await c.query(
        `SELECT current_setting('archive_mode') = 'on' AS archiving, archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time,
                (SELECT count(*) FROM pg_catalog.pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::int AS waiting
           FROM pg_catalog.pg_stat_archiver`,
      )
    ).rows[0];
    const at = (v: Date | null) => (v ? v.toISOString() : null);
    return {
      archiving: r.archiving,
      archivedCount: Number(r.archived_count),
      lastArchivedWal: r.last_archived_wal,
      lastArchivedAt: at(r.last_archived_time),
      failedCount: Number(r.failed_count),
      lastFailedWal: r.last_failed_wal,
      lastFailedAt: at(r.last_failed_time),
      walWaiting: r.waiting,
      failing: !!r.last_failed_time && (!r.last_archived_time || r.last_failed_time > r.last_archived_time),
    };
  });
}
