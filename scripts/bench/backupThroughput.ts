// Backup and restore throughput: a full pgBackRest backup of the bench stack's primary (and its
// restore into an empty directory) against a plain pg_basebackup of the same cluster (and a copy of
// its output into an empty directory, which is what restoring it means), alternated per round. The
// figures are GB of cluster per minute, and the ratio pgBackRest / pg_basebackup.
import * as fs from "fs";
import * as path from "path";
import { BACKUP_ROLE } from "../../infra/topology/pgbackrest";
import { REPLICATION_USER } from "../../infra/topology/replicaBootstrap";
import { localContext } from "../local/context";
import { ensureServerDir } from "../local/postgresNode";
import { HOST, loadState } from "../local/state";
import { run } from "../local/system";
import { backup, listBackups, pgbackrestOn } from "../ops/backup";
import { BENCH_SCHEMA } from "./fixtures";
import { withClient } from "./db";
import { alternate, ratios, spread, timed } from "./runner";
import { Benchmark, BenchContext, Figure, sized } from "./types";

const FILLER = `${BENCH_SCHEMA}.backup_filler`;
const GB = 1024 ** 3;
/** Each round copies the whole cluster four times (two backups, two restores): fewer rounds than the other figures keep the full run in its 12 minutes. */
const FULL_ROUNDS = 3;

export const backupThroughput: Benchmark = {
  id: "backup",
  title: "backup and restore throughput",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const rows = sized(ctx, { quick: 50_000, full: 3_000_000 });
    const url = ctx.outputs.connections.admin;
    const rounds = ctx.quick ? ctx.rounds : Math.min(ctx.rounds, FULL_ROUNDS);
    const clusterBytes = await withClient(url, async (c) => {
      await c.query(`CREATE TABLE ${FILLER} AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5(random()::text) AS payload FROM generate_series(1, $1::int) g`, [rows]);
      await c.query("CHECKPOINT");
      return Number((await c.query("SELECT sum(pg_database_size(datname))::float8 AS b FROM pg_database")).rows[0].b);
    });
    const state = loadState(ctx.stack)!;
    const local = localContext(ctx.stack, () => undefined);
    const scratch = path.join(local.dir, "bench-backup");
    const fresh = (name: string) => {
      const dir = path.join(scratch, name);
      fs.rmSync(dir, { recursive: true, force: true });
      ensureServerDir(local, dir);
      return dir;
    };
    ensureServerDir(local, scratch);
    const basebackupDir = path.join(scratch, "basebackup");
    const pgEnv = { PGPASSWORD: state.passwords[REPLICATION_USER] };
    try {
      // One backup first, so incremental state and the stanza are warm alike for every round.
      await backup({ stack: ctx.stack, type: "full" });
      ctx.note("full backups: pgBackRest against pg_basebackup");
      const backups = await alternate(rounds, {
        subject: () => timed(() => pgbackrestOn(ctx.stack, ["--type=full", "backup"])),
        baseline: () => {
          const dir = fresh("basebackup");
          return timed(() =>
            run(path.join(ctx.pgBinDir, "pg_basebackup"), ["-h", HOST, "-p", String(state.ports.primary), "-U", REPLICATION_USER, "-D", dir, "-X", "stream", "-c", "fast", "--no-password"], {
              as: local.user,
              env: pgEnv,
              timeoutMs: 60 * 60_000,
            }),
          );
        },
      });
      const label = (await listBackups(ctx.stack)).backups.at(-1)!.label;
      ctx.note("restores: pgBackRest restore against copying the base backup");
      const restores = await alternate(rounds, {
        subject: () => {
          const dir = fresh("restore-pgbackrest");
          return timed(() => pgbackrestOn(ctx.stack, [`--pg1-path=${dir}`, `--set=${label}`, "--type=immediate", "restore"]));
        },
        baseline: () => {
          const dir = fresh("restore-copy");
          return timed(() => run("cp", ["-a", `${basebackupDir}/.`, dir], { as: local.user, timeoutMs: 60 * 60_000 }));
        },
      });
      const perMin = (ms: number) => clusterBytes / GB / (ms / 60_000);
      const figure = (id: string, what: string, r: { subject: number[]; baseline: number[] }, baseline: string, method: string): Figure => {
        const value = ratios(r.subject.map(perMin), r.baseline.map(perMin));
        return {
          id,
          title: `${what} throughput, pgBackRest (${(clusterBytes / 1048576).toFixed(0)} MB cluster)`,
          against: baseline,
          goal: "none (reported beside pg_basebackup)",
          value,
          unit: "× the baseline's GB/min",
          met: null,
          method,
          details: {
            clusterBytes,
            pgbackrestGBPerMin: spread(r.subject.map(perMin)),
            baselineGBPerMin: spread(r.baseline.map(perMin)),
          },
          evidence: [`pgBackRest runs as the server user, connects as ${BACKUP_ROLE}, compresses with lz4 and checksums every file; pg_basebackup writes uncompressed`],
        };
      };
      return [
        figure("backup.full", "full backup", backups, "pg_basebackup -X stream -c fast of the same cluster (plain format)", `${rounds} rounds; per round, a full pgBackRest backup (lz4, start-fast) and a pg_basebackup of the same primary, order alternated; GB of cluster (sum of pg_database_size) per minute of wall time.`),
        figure("backup.restore", "restore", restores, "copying the pg_basebackup output into an empty directory (cp -a)", `${rounds} rounds; per round, pgBackRest restore of the newest full backup into an empty directory (files only, --type=immediate) and cp -a of the base backup into another, order alternated; GB of cluster per minute.`),
      ];
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
      await withClient(url, (c) => c.query(`DROP TABLE IF EXISTS ${FILLER}`));
    }
  },
};
