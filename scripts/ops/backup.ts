// Backups and point-in-time recovery of a local stack with pgBackRest (Debian's package): `up`
// keeps the stanza, its config and the backup role (scripts/local/backupRepo.ts); `nbdb backup` takes a full, differential or
// incremental backup; `nbdb backup list` shows them and the window a restore can reach;
// `nbdb restore` builds a NEW stack from the source's repository at a point in time. pgBackRest runs
// as the server user and connects as nb_backup (backup functions only, not a superuser).
import * as fs from "fs";
import * as path from "path";
import { Client } from "pg";
import { withClient } from "../db";
import { BACKUP_ROLE, restoreArgs } from "../../infra/topology/pgbackrest";
import { LocalContext, localContext } from "../local/context";
import { UserError } from "../errors";
import { backupPassword, restorePendingFile, runPgbackrest } from "../local/backupRepo";
import { backupPaths, requirePgbackrest } from "../local/pgbackrest";
import { dataDir, ensureServerDir, runningPid, stopNode } from "../local/postgresNode";
import { HOST, LocalStackOutputs, StackState, clientSsl, loadState, newKeptPort, newState, requireStack, saveState, stackDir, validateStackName, writePrivate } from "../local/state";
import { up } from "../local/stack";
import { RunResult, run } from "../local/system";

export type BackupType = "full" | "diff" | "incr";
export const BACKUP_TYPES: readonly BackupType[] = ["full", "diff", "incr"];

export function parseBackupType(text: string): BackupType {
  if (!(BACKUP_TYPES as readonly string[]).includes(text)) {
    throw new UserError(`--type must be one of ${BACKUP_TYPES.join(", ")} (full copies everything; diff what changed since the last full; incr since the last backup), got '${text}'.`);
  }
  return text as BackupType;
}

/** pgBackRest on a stack's stanza, as the server user (the bench times it against pg_basebackup). */
export function pgbackrestOn(stack: string, args: readonly string[]): Promise<RunResult> {
  return runPgbackrest(requireBackupConfig(stack), args);
}

export interface BackupEntry {
  readonly label: string;
  readonly type: BackupType;
  readonly start: string;
  readonly stop: string;
  /** Size of the database at the time of the backup, and what this backup added to the repository. */
  readonly databaseBytes: number;
  readonly repositoryBytes: number;
  readonly walStart: string;
  readonly walStop: string;
}

export interface BackupList {
  readonly stack: string;
  readonly repository: string;
  readonly backups: BackupEntry[];
  /** The earliest time a restore can reach (the end of the oldest backup), null without backups. */
  readonly earliestRestore: string | null;
  readonly latestArchivedWal: string | null;
}

const iso = (epochSeconds: number) => new Date(epochSeconds * 1000).toISOString();

interface InfoJson {
  name: string;
  backup?: { label: string; type: BackupType; timestamp: { start: number; stop: number }; info: { size: number; repository: { delta: number } }; archive: { start: string; stop: string } }[];
  archive?: { max: string | null }[];
}

function requireBackupConfig(stack: string): LocalContext {
  const ctx = localContext(stack, () => undefined);
  requirePgbackrest();
  if (!fs.existsSync(backupPaths(ctx).config)) {
    throw new UserError(`stack '${stack}' has no backup repository yet; run npx nbdb up --stack ${stack} (with pgbackrest installed) first.`);
  }
  return ctx;
}

export async function listBackups(stack: string): Promise<BackupList> {
  requireStack(stack);
  const ctx = requireBackupConfig(stack);
  const { stdout } = await runPgbackrest(ctx, ["--output=json", "info"], 120_000);
  const info = (JSON.parse(stdout) as InfoJson[]).find((s) => s.name === stack);
  const backups = (info?.backup ?? []).map((b) => ({
    label: b.label,
    type: b.type,
    start: iso(b.timestamp.start),
    stop: iso(b.timestamp.stop),
    databaseBytes: b.info.size,
    repositoryBytes: b.info.repository.delta,
    walStart: b.archive.start,
    walStop: b.archive.stop,
  }));
  return {
    stack,
    repository: backupPaths(ctx).repo,
    backups,
    // pgBackRest records whole seconds; the backup is consistent only somewhat after its stop second began.
    earliestRestore: backups.length ? iso(info!.backup![0].timestamp.stop + 1) : null,
    latestArchivedWal: info?.archive?.[0]?.max ?? null,
  };
}

/** A connection as the backup role to the primary's `postgres` database. */
async function asBackupRole<T>(ctx: LocalContext, state: StackState, fn: (c: Client) => Promise<T>): Promise<T> {
  return withClient({ host: HOST, port: state.ports.primary, user: BACKUP_ROLE, password: backupPassword(ctx), database: "postgres", ssl: clientSsl(state.stack) }, fn, "nbdb-backup");
}

async function requireArchiving(ctx: LocalContext, state: StackState): Promise<void> {
  if (!runningPid(ctx, "primary")) throw new UserError(`the primary of stack '${ctx.stack}' is not running; start it with: npx nbdb up --stack ${ctx.stack}`);
  const mode = await asBackupRole(ctx, state, async (c) => (await c.query("SELECT current_setting('archive_mode') AS m")).rows[0].m as string);
  if (mode !== "on") {
    throw new UserError(
      `WAL archiving is not active on the primary of stack '${ctx.stack}' yet (archive_mode takes effect at a restart). Nothing was changed.\n` +
        `Restart it with: npx nbdb down --stack ${ctx.stack} && npx nbdb up --stack ${ctx.stack}`,
    );
  }
}

export interface BackupOptions {
  readonly stack: string;
  readonly type?: BackupType;
  readonly log?: (line: string) => void;
}

/** Take a backup of the stack's primary; returns it (the newest in the repository). */
export async function backup(opts: BackupOptions): Promise<BackupEntry> {
  const state = requireStack(opts.stack);
  const ctx = requireBackupConfig(opts.stack);
  await requireArchiving(ctx, state);
  const type = opts.type ?? "full";
  opts.log?.(`taking a backup (${type}) of stack ${opts.stack}`);
  await runPgbackrest(ctx, [`--type=${type}`, "backup"]);
  const list = await listBackups(opts.stack);
  return list.backups[list.backups.length - 1];
}

/** A restore target: an ISO 8601 time with its zone (PostgreSQL and pgBackRest read it as given). */
export function parseRestoreTime(text: string, now = new Date()): Date {
  const zoned = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)$/;
  const t = new Date(text.trim().replace(" ", "T"));
  if (!zoned.test(text.trim()) || Number.isNaN(t.getTime())) {
    throw new UserError(`--to must be a time with its zone, like 2026-12-01T22:30:00Z or 2026-12-01 23:30:00+01, got '${text}'. Nothing was changed.`);
  }
  if (t.getTime() > now.getTime()) throw new UserError(`--to ${text} is in the future (now is ${now.toISOString()}); a restore reaches at most the present. Nothing was changed.`);
  return t;
}

export interface RestoreOptions {
  readonly stack: string;
  readonly to: string;
  readonly into: string;
  readonly log?: (line: string) => void;
}

export interface RestoreResult {
  readonly outputs: LocalStackOutputs;
  readonly target: string;
  /** The backup the restore started from. */
  readonly from: string;
}

async function check(opts: RestoreOptions): Promise<{ source: StackState; srcCtx: LocalContext; from: BackupEntry }> {
  const into = validateStackName(opts.into);
  if (into === opts.stack) throw new UserError(`--into must name a new stack, not the source '${opts.stack}': a restore never overwrites a stack. Nothing was changed.`);
  if (loadState(into) || fs.existsSync(stackDir(into))) {
    throw new UserError(`stack '${into}' already exists (${stackDir(into)}): a restore creates a new stack. Choose another name, or remove it first with npx nbdb down --stack ${into} --purge --yes. Nothing was changed.`);
  }
  const source = requireStack(opts.stack);
  const target = parseRestoreTime(opts.to);
  const list = await listBackups(opts.stack);
  if (list.backups.length === 0) throw new UserError(`stack '${opts.stack}' has no backup yet; take one with: npx nbdb backup --stack ${opts.stack}. Nothing was changed.`);
  if (target.getTime() < Date.parse(list.earliestRestore!)) {
    throw new UserError(`--to ${opts.to} is before the end of the oldest backup of stack '${opts.stack}' (${list.earliestRestore}); the earliest time a restore can reach is that. Nothing was changed.`);
  }
  const from = [...list.backups].reverse().find((b) => Date.parse(b.stop) + 1000 <= target.getTime())!;
  return { source, srcCtx: localContext(opts.stack, opts.log ?? (() => undefined)), from };
}

/**
 * Restore stack `stack` as it was at `to` into the new stack `into`. The new stack gets its own
 * ports, repository and passwords (rotated once it is promoted), and the source's data key so
 * that the encrypted columns stay readable; `up` then builds its replicas and pooler. On any
 * failure the new stack's directory is removed: the source is never touched.
 */
export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const log = opts.log ?? (() => undefined);
  const { source, srcCtx, from } = await check(opts);
  if (runningPid(srcCtx, "primary")) {
    // Recovery to a time stops at the first commit after it, which must be in the archive: commit
    // a transaction now and let pgBackRest's check switch and archive the WAL segment.
    await asBackupRole(srcCtx, source, (c) => c.query("SELECT pg_catalog.txid_current()"));
    await runPgbackrest(srcCtx, ["check"], 300_000);
  }
  const ctx = localContext(opts.into, log);
  fs.mkdirSync(ctx.dir, { recursive: true, mode: process.getuid?.() === 0 ? 0o755 : 0o700 });
  try {
    ensureServerDir(ctx, path.join(ctx.dir, "log"));
    const primary = await newKeptPort();
    const pooler = await newKeptPort([primary]);
    const state = newState(opts.into, { primary, pooler });
    // The restored database holds the source's role passwords until `up` rotates them.
    state.passwords = { ...source.passwords };
    state.dataKey = source.dataKey;
    state.primaryBootstrapped = true;
    state.replicas = source.replicas ?? source.ports.replicas.length;
    saveState(state);
    // Restored into a staging directory and renamed once complete: a restore killed while copying
    // leaves no primary directory, which `up` refuses to replace with an empty database.
    const dir = dataDir(ctx, "primary");
    const staging = `${dir}.restoring`;
    ensureServerDir(ctx, staging);
    log(`restoring stack ${opts.stack} as of ${opts.to} (from backup ${from.label})`);
    const bin = requirePgbackrest();
    const srcConfig = backupPaths(srcCtx).config;
    // WAL comes from the source's repository, into the directory's final place.
    await run(
      bin,
      restoreArgs({ configFile: srcConfig, stanza: opts.stack, pgPath: staging, finalPgPath: dir, set: from.label, target: opts.to, bin }),
      { as: ctx.user, timeoutMs: 6 * 60 * 60_000 },
    );
    writePrivate(restorePendingFile(ctx), JSON.stringify({ source: opts.stack, to: opts.to }) + "\n");
    fs.renameSync(staging, dir);
    log("recovering, then building the restored stack's replicas and pooler");
    const res = await up({ stack: opts.into, log });
    return { outputs: res.outputs, target: opts.to, from: from.label };
  } catch (e) {
    await stopNode(ctx, "primary").catch(() => undefined);
    fs.rmSync(ctx.dir, { recursive: true, force: true });
    throw e;
  }
}
