// How a streaming replica comes to life, written once as a POSIX shell script: the local stack runs
// it as the server user, the Docker stack as the replica container's first step before `postgres`.
// The replication password arrives in PGPASSWORD, never on a command line.

export interface ReplicaBootstrap {
  readonly primaryHost: string;
  readonly primaryPort: number;
  readonly replicationUser: string;
  /** The replica's index: its slot is `replica_<i>` and its application_name `replica-<i>`. */
  readonly index: number;
  /**
   * The CA that signed the primary's certificate: the replica streams with sslmode=verify-full
   * (pg_basebackup writes this connection into primary_conninfo).
   */
  readonly caFile: string;
  /** How long to wait for the primary to accept connections. */
  readonly waitSeconds?: number;
}

/** The role replicas stream as (schema/roles.ts declares it with REPLICATION). */
export const REPLICATION_USER = "nb_replicator";

export function replicaSlotName(index: number): string {
  return `replica_${index}`;
}

export function replicaApplicationName(index: number): string {
  return `replica-${index}`;
}

/** A libpq conninfo value, quoted when it needs to be. */
function conninfoValue(s: string): string {
  if (/^[A-Za-z0-9_./-]+$/.test(s)) return s;
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The script expects PGDATA (the replica's data directory, existing and owned by the server user)
 * and PGPASSWORD. It is idempotent: a data directory that already holds a cluster is left alone; a
 * partial one (an interrupted backup) is emptied and taken again. The physical slot is created
 * first, so the primary keeps the WAL the replica needs from the backup's start on.
 */
export function replicaBootstrapScript(b: ReplicaBootstrap): string {
  const slot = replicaSlotName(b.index);
  const conn = `host=${b.primaryHost} port=${b.primaryPort} user=${b.replicationUser} sslmode=verify-full sslrootcert=${conninfoValue(b.caFile)}`;
  const createSlot =
    `SELECT pg_catalog.pg_create_physical_replication_slot('${slot}') ` +
    `WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = '${slot}')`;
  return [
    "set -eu",
    `: "\${PGDATA:?PGDATA must name the replica's data directory}"`,
    `: "\${PGPASSWORD:?PGPASSWORD must hold the replication password}"`,
    `if [ -s "$PGDATA/PG_VERSION" ]; then echo "replica-${b.index}: data directory already holds a cluster"; exit 0; fi`,
    `find "$PGDATA" -mindepth 1 -delete`,
    `tries=${b.waitSeconds ?? 60}`,
    `until pg_isready -q -h ${b.primaryHost} -p ${b.primaryPort}; do`,
    `  tries=$((tries - 1)); [ "$tries" -gt 0 ] || { echo "replica-${b.index}: primary ${b.primaryHost}:${b.primaryPort} is not accepting connections" >&2; exit 1; }`,
    "  sleep 1",
    "done",
    `psql -X -q -v ON_ERROR_STOP=1 ${shellQuote(`${conn} dbname=postgres`)} -c ${shellQuote(createSlot)}`,
    `pg_basebackup --pgdata="$PGDATA" --dbname=${shellQuote(`${conn} application_name=${replicaApplicationName(b.index)}`)} ` +
      `--slot=${slot} --write-recovery-conf --wal-method=stream --checkpoint=fast --no-password`,
    `echo "replica-${b.index}: base backup taken, streaming from slot ${slot}"`,
  ].join("\n") + "\n";
}
