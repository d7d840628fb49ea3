// Where a local stack's pgBackRest lives: its config, the backup role's password file, lock and
// spool directories, and its repository (in the stack directory unless NBDB_BACKUP_ROOT names
// another place, e.g. a second disk). Archiving is on wherever Debian's pgbackrest is installed.
import * as fs from "fs";
import * as path from "path";
import { archiveCommand } from "../../infra/topology/pgbackrest";
import { LocalContext } from "./context";
import { UserError } from "../errors";

export function pgbackrestBin(): string | undefined {
  if (process.env.NBDB_PGBACKREST) return fs.existsSync(process.env.NBDB_PGBACKREST) ? process.env.NBDB_PGBACKREST : undefined;
  return ["/usr/bin/pgbackrest", "/usr/local/bin/pgbackrest"].find((p) => fs.existsSync(p));
}

export function requirePgbackrest(): string {
  const bin = pgbackrestBin();
  if (!bin) {
    throw new UserError(
      "pgBackRest is not installed: backups and point-in-time restores need it.\n" +
        "Install it with: sudo apt-get update && sudo apt-get install -y pgbackrest\n" +
        "then run npx nbdb up (it turns WAL archiving on; a running primary needs a restart, which up says).",
    );
  }
  return bin;
}

export interface BackupPaths {
  readonly dir: string;
  readonly config: string;
  readonly pgpass: string;
  readonly lock: string;
  readonly spool: string;
  readonly log: string;
  readonly repo: string;
}

export function backupPaths(ctx: Pick<LocalContext, "dir" | "stack">): BackupPaths {
  const dir = path.join(ctx.dir, "pgbackrest");
  const root = process.env.NBDB_BACKUP_ROOT;
  return {
    dir,
    config: path.join(dir, "pgbackrest.conf"),
    pgpass: path.join(dir, "pgpass"),
    lock: path.join(dir, "lock"),
    spool: path.join(dir, "spool"),
    log: path.join(ctx.dir, "log", "pgbackrest"),
    repo: root ? path.join(path.resolve(root), ctx.stack) : path.join(ctx.dir, "backup-repo"),
  };
}

/** The archive settings of a node, or undefined when pgBackRest is not installed. */
export function archiveOption(ctx: LocalContext, nodeDataDir: string): { command: string } | undefined {
  const bin = pgbackrestBin();
  if (!bin) return undefined;
  return { command: archiveCommand(backupPaths(ctx).config, ctx.stack, nodeDataDir).replace(/^pgbackrest /, `${bin} `) };
}
