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

/**
 * SQL that makes sure each physical slot exists and can serve a replica, WAL reserved at once: one
 * that is there but lost (wal_status 'lost', past max_slot_wal_keep_size, or an old slot of the
 * data's earlier life) and that no walsender uses is dropped and made again. Slot names are
 * replicaSlotName()'s. Run by the replica bootstrap (as the replication role), the local stack's
 * and the Docker stack's switchover and failover.
 */
export function ensureSlotsSql(slots: readonly string[]): string {
  const names = slots.map((s) => `('${s}')`).join(", ");
  return (
    `SELECT pg_catalog.pg_drop_replication_slot(r.slot_name) FROM pg_catalog.pg_replication_slots r ` +
    `WHERE r.slot_name IN (SELECT name FROM (VALUES ${names}) AS s(name)) AND r.wal_status = 'lost' AND NOT r.active; ` +
    `SELECT pg_catalog.pg_create_physical_replication_slot(s.name, true) FROM (VALUES ${names}) AS s(name) ` +
    `WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots r WHERE r.slot_name = s.name)`
  );
}

/** An LSN (X/Y) as a number that orders like it; none (null) before every other. */
export function lsnValue(lsn: string | null): bigint {
  if (!lsn) return -1n;
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
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

/** How a replica reaches its primary (without password and application_name): verified TLS. */
function replicationConninfo(b: ReplicaBootstrap): string {
  return `host=${b.primaryHost} port=${b.primaryPort} user=${b.replicationUser} sslmode=verify-full sslrootcert=${conninfoValue(b.caFile)}`;
}

/**
 * The standby settings of a replica made from a former primary (a switchover or failover re-attaches
 * the old primary): what pg_basebackup --write-recovery-conf writes for a new one, as
 * postgresql.auto.conf lines. The password must be of the characters the bootstrap script rewrites.
 */
function standbySettings(b: ReplicaBootstrap, password: string): Record<"primary_conninfo" | "primary_slot_name", string> {
  return {
    primary_conninfo: `${replicationConninfo(b)} password=${conninfoValue(password)} application_name=${replicaApplicationName(b.index)}`,
    primary_slot_name: replicaSlotName(b.index),
  };
}

/** One postgresql.auto.conf line, `key = 'value'` (a quote inside doubled), as ALTER SYSTEM writes it. */
function autoConfLine(key: string, value: string): string {
  return `${key} = '${value.replace(/'/g, "''")}'`;
}

/** Stands for the password while standbySettings() is rendered for the script (conninfoValue leaves it unquoted). */
const PASSWORD_SLOT = "NBDB_PASSWORD_SLOT_7f3c";

/**
 * Shell lines appending standbySettings() to "$auto", the password taken from $PGPASSWORD at run
 * time (the caller has checked its characters): everything else is rendered here, by the one owner.
 */
function appendStandbySettings(b: ReplicaBootstrap): string[] {
  const lines = Object.entries(standbySettings(b, PASSWORD_SLOT)).map(([k, v]) => autoConfLine(k, v)).join("\n");
  const parts = lines.split(PASSWORD_SLOT);
  if (parts.length !== 2) throw new Error(`the replica's standby settings must hold its password once, got: ${lines}`);
  return [`printf '%s%s%s\\n' ${shellQuote(parts[0])} "$PGPASSWORD" ${shellQuote(parts[1])} >> "$auto"`];
}

/**
 * The functions pg_rewind calls on its source server (PostgreSQL 15's signatures, pg_rewind's
 * libpq source): with EXECUTE on them the replication role rewinds a former primary without being
 * superuser. Without pg_read_server_files they read only inside the data directory, which a
 * REPLICATION role may already copy whole by a base backup.
 */
export const REWIND_FUNCTIONS = [
  "pg_catalog.pg_ls_dir(text, boolean, boolean)",
  "pg_catalog.pg_stat_file(text, boolean)",
  "pg_catalog.pg_read_binary_file(text)",
  "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
] as const;

/**
 * The GRANTs that let the replication role run pg_rewind, idempotent. Function privileges belong to
 * a database: this runs in database `postgres`, where the bootstrap's pg_rewind connects.
 */
export function rewindGrantsSql(role: string = REPLICATION_USER): string {
  return REWIND_FUNCTIONS.map((f) => `GRANT EXECUTE ON FUNCTION ${f} TO ${role};`).join("\n");
}

/**
 * Prints the replica's slot on the primary as "physical,<restart_lsn>,<timeline>" over a physical
 * replication connection (READ_REPLICATION_SLOT needs no database privilege); a slot that is gone
 * or lost (wal_status 'lost') has no restart_lsn. Fails when the primary cannot be reached.
 */
function slotStateCommand(b: ReplicaBootstrap): string {
  return replicationCommand(b, `READ_REPLICATION_SLOT ${replicaSlotName(b.index)}`);
}

/** One replication-protocol command to the primary over a physical replication connection (no database privilege). */
function replicationCommand(b: ReplicaBootstrap, command: string): string {
  const conn = `${replicationConninfo(b)} replication=true connect_timeout=10`;
  return `psql -X -At -F , ${shellQuote(conn)} -c ${shellQuote(command)} 2>/dev/null`;
}

/**
 * Shell lines that stop (exit 1, a message naming both identifiers) when PGDATA holds a whole
 * cluster (pg_controldata reads its control file) whose database system identifier is not the
 * primary's (IDENTIFY_SYSTEM): the primary is then another cluster, e.g. one initdb'd anew after its
 * data was lost, and this directory may be the last copy of the data. A directory without a control
 * file (an interrupted base backup) passes. `unreachable` runs when the primary cannot be asked.
 * The one comparison of identifiers: the bootstrap script and the local stack (before it discards
 * any replica's directory) run it.
 */
function systemIdentifierCheck(b: ReplicaBootstrap, unreachable: string): string[] {
  const where = `${b.primaryHost}:${b.primaryPort}`;
  return [
    `own_id="$(LC_ALL=C pg_controldata "$PGDATA" 2>/dev/null | sed -n 's/^Database system identifier:[[:space:]]*//p')"`,
    `if [ -n "$own_id" ]; then`,
    `  primary_id="$(${replicationCommand(b, "IDENTIFY_SYSTEM")})" || primary_id=""`,
    `  primary_id="\${primary_id%%,*}"`,
    `  if [ -z "$primary_id" ]; then`,
    `    ${unreachable}`,
    `  elif [ "$primary_id" != "$own_id" ]; then`,
    `    echo "replica-${b.index}: the primary ${where} is a different cluster than the one this replica copies (the primary's database system identifier is $primary_id, this replica's $own_id): ` +
      `its data directory $PGDATA is kept as it is, not replaced by a copy of that primary. If the primary's data was lost, this replica may hold the last copy: promote it (docs/switchover.md). ` +
      `If the new primary is really meant, delete this replica's data directory (on Docker its volume) and start it again." >&2`,
    `    exit 1`,
    `  fi`,
    `fi`,
  ];
}

/**
 * The check alone, for a caller about to discard the replica's data directory (PGDATA; PGPASSWORD
 * the replication password): exit 0 when it holds no whole cluster or a copy of the primary's, 1
 * when it is another cluster's or the primary cannot be asked (nothing is discarded unchecked).
 */
export function replicaIdentityCheckScript(b: ReplicaBootstrap): string {
  return [
    "set -eu",
    `: "\${PGDATA:?PGDATA must name the replica's data directory}"`,
    ...systemIdentifierCheck(b, `echo "replica-${b.index}: the primary ${b.primaryHost}:${b.primaryPort} cannot be asked for its database system identifier (IDENTIFY_SYSTEM); the data directory $PGDATA is kept" >&2; exit 1`),
  ].join("\n") + "\n";
}

/** A case pattern: the slot exists and holds WAL for the replica. */
const SLOT_HELD = "physical,[0-9A-F]*/[0-9A-F]*,*";

/**
 * A loop to run beside a running standby (the Docker replica container): when the primary has lost
 * or dropped the replica's slot, the standby can never catch up, so it stops the server (PID 1 of the
 * container) and the container's restart policy starts it again, when the bootstrap takes it anew.
 */
export function slotWatchScript(b: ReplicaBootstrap, everySeconds = 60): string {
  return [
    "while sleep " + everySeconds + "; do",
    `  state="$(${slotStateCommand(b)})" || continue`,
    `  case "$state" in ${SLOT_HELD}) ;; *) echo "replica-${b.index}: slot ${replicaSlotName(b.index)} lost on the primary; restarting to take a new base backup" >&2; kill -INT 1; exit 0 ;; esac`,
    "done",
  ].join("\n") + "\n";
}

/** The replica's password must be one primary_conninfo can hold unquoted (the script writes it there). */
function passwordCheck(b: ReplicaBootstrap): string {
  return `case "$PGPASSWORD" in *[!A-Za-z0-9_-]*) echo "replica-${b.index}: the replication password has characters this script does not write into primary_conninfo" >&2; exit 1 ;; esac`;
}

/**
 * Shell lines for a data directory that holds a whole cluster of the primary's (the identifier
 * check has passed) but is no standby (no standby.signal): a former primary, whose volume a Docker
 * switchover or failover gave to this replica. Started as it is it would be a second primary, so:
 * not checked (the primary unreachable, or itself in recovery) -> exit 1, nothing changed; else
 * pg_rewind as the replication role (rewindGrantsSql()) takes back whatever only it had, and it
 * becomes this replica (standby settings, standby.signal: exit 0); a rewind that fails sets
 * `rebuild`, and the script takes a new base backup.
 */
function formerPrimaryBranch(b: ReplicaBootstrap): string[] {
  const slot = replicaSlotName(b.index);
  const where = `${b.primaryHost}:${b.primaryPort}`;
  const source = `${replicationConninfo(b)} dbname=postgres connect_timeout=10`;
  const keep = `the directory is kept as it is and this replica does not start (a former primary never starts unchecked; the container's restart policy tries again)`;
  // With WAL reserved now: the rewound standby replays the WAL pg_rewind copied, then streams from here on.
  const createSlot = ensureSlotsSql([slot]);
  return [
    `if [ -s "$PGDATA/PG_VERSION" ] && [ -f "$PGDATA/global/pg_control" ] && [ ! -e "$PGDATA/standby.signal" ]; then`,
    `  if [ -z "$own_id" ]; then echo "replica-${b.index}: $PGDATA holds a cluster whose control file pg_controldata cannot read, and no standby.signal; ${keep}" >&2; exit 1; fi`,
    `  if [ -n "\${unreachable:-}" ]; then echo "replica-${b.index}: $PGDATA holds a former primary (no standby.signal) and the primary ${where} cannot be asked about it; ${keep}" >&2; exit 1; fi`,
    `  ${passwordCheck(b)}`,
    `  in_recovery="$(psql -X -At ${shellQuote(source)} -c 'SELECT pg_catalog.pg_is_in_recovery()' 2>&1)" || { echo "replica-${b.index}: the primary ${where} cannot be asked whether it is in recovery ($in_recovery); ${keep}" >&2; exit 1; }`,
    `  if [ "$in_recovery" != "f" ]; then echo "replica-${b.index}: the primary ${where} is itself in recovery (a standby), so $PGDATA, a former primary, is not rewound to it; ${keep}" >&2; exit 1; fi`,
    // pg_rewind (PostgreSQL 15) takes the source's timeline from its control file, which a primary
    // promoted moments ago shows as its old one until its first checkpoint: a rewind then might
    // find nothing to take back where there is. It waits for that checkpoint.
    `  tries=${b.waitSeconds ?? 60}`,
    `  while :; do`,
    `    current="$(${replicationCommand(b, "IDENTIFY_SYSTEM")})" || current=""`,
    `    current="\${current#*,}"; current="\${current%%,*}"`,
    `    checkpointed="$(psql -X -At ${shellQuote(source)} -c 'SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()' 2>/dev/null)" || checkpointed=""`,
    `    if [ -n "$current" ] && [ "$current" = "$checkpointed" ]; then break; fi`,
    `    tries=$((tries - 1)); if [ "$tries" -le 0 ]; then echo "replica-${b.index}: the primary ${where} runs on timeline \${current:-unknown} but its last checkpoint is on timeline \${checkpointed:-unknown} (promoted moments ago: run CHECKPOINT on it), which pg_rewind would misread; ${keep}" >&2; exit 1; fi`,
    `    sleep 1`,
    `  done`,
    `  psql -X -q -v ON_ERROR_STOP=1 ${shellQuote(source)} -c ${shellQuote(createSlot)} >/dev/null`,
    `  if rewind_out="$(LC_ALL=C pg_rewind --target-pgdata="$PGDATA" --source-server=${shellQuote(source)} 2>&1)"; then`,
    `    auto="$PGDATA/postgresql.auto.conf"; touch "$auto"`,
    `    sed -i -e '/^[[:space:]]*primary_conninfo[[:space:]]*=/d' -e '/^[[:space:]]*primary_slot_name[[:space:]]*=/d' "$auto"`,
    ...appendStandbySettings(b).map((l) => `    ${l}`),
    `    touch "$PGDATA/standby.signal"`,
    // pg_rewind leaves pg_replslot as it was: the slots of its life as a primary would hold WAL on the standby.
    `    find "$PGDATA/pg_replslot" -mindepth 1 -delete 2>/dev/null || true`,
    `    echo "$rewind_out"`,
    `    case "$rewind_out" in *"no rewind required"*) how="no rewind required" ;; *) how="rewound" ;; esac`,
    `    echo "replica-${b.index}: the former primary in $PGDATA is re-attached ($how) as a standby of ${where}, slot ${slot}"; exit 0`,
    `  fi`,
    `  echo "replica-${b.index}: pg_rewind of the former primary in $PGDATA failed: $rewind_out; taking a new base backup (the system identifier matched: only its un-replicated tail is lost, as a rewind would)" >&2`,
    `  rebuild=1`,
    `fi`,
  ];
}

/**
 * The script expects PGDATA (the replica's data directory, existing and owned by the server user)
 * and PGPASSWORD. It is idempotent: a data directory that already holds a cluster is kept (with the
 * current replication password written into its primary_conninfo) unless the primary has lost its
 * slot, when it is taken again; a partial one (an interrupted backup) is emptied and taken again. The physical slot is created
 * first, so the primary keeps the WAL the replica needs from the backup's start on. A whole cluster
 * that is not a copy of the primary's (another database system identifier: a primary initdb'd anew)
 * is never discarded: the script refuses (exit 1) and the replica does not start. A whole copy
 * without standby.signal is a former primary: rewound and re-attached (formerPrimaryBranch), never
 * started as it is.
 */
export function replicaBootstrapScript(b: ReplicaBootstrap): string {
  const slot = replicaSlotName(b.index);
  const conn = replicationConninfo(b);
  const createSlot = ensureSlotsSql([slot]);
  return [
    "set -eu",
    `: "\${PGDATA:?PGDATA must name the replica's data directory}"`,
    `: "\${PGPASSWORD:?PGPASSWORD must hold the replication password}"`,
    // Never another cluster's copy is discarded, for any reason below; an unreachable primary decides nothing.
    ...systemIdentifierCheck(b, `unreachable=1`),
    ...formerPrimaryBranch(b),
    `if [ -z "\${rebuild:-}" ] && [ -s "$PGDATA/PG_VERSION" ]; then`,
    // The primary may have dropped the slot (past max_slot_wal_keep_size: wal_status 'lost'), or
    // never kept it: the replica can then never catch up, so it is taken again. A physical
    // replication connection can tell (READ_REPLICATION_SLOT: no restart_lsn) without any database
    // privilege; an unreachable primary decides nothing (the standby retries on its own).
    `  if [ -n "\${unreachable:-}" ]; then slot_state="unknown"; else slot_state="$(${slotStateCommand(b)})" || slot_state="unknown"; fi`,
    `  case "$slot_state" in`,
    `    unknown) echo "replica-${b.index}: primary not reachable; starting from the existing data directory" ;;`,
    `    ${SLOT_HELD}) ;;`,
    `    *) echo "replica-${b.index}: slot ${slot} is lost or gone on the primary; taking a new base backup" >&2; rebuild=1 ;;`,
    `  esac`,
    `  if [ -z "\${rebuild:-}" ]; then`,
    // pg_basebackup wrote the password into primary_conninfo: a changed replication password must reach it.
    `    ${passwordCheck(b)}`,
    `    auto="$PGDATA/postgresql.auto.conf"`,
    `    if [ -f "$auto" ] && grep -q '^primary_conninfo' "$auto"; then`,
    `      sed -i "s/password=[A-Za-z0-9_-]*/password=$PGPASSWORD/" "$auto"`,
    `    fi`,
    `    echo "replica-${b.index}: data directory already holds a cluster"; exit 0`,
    `  fi`,
    `fi`,
    // A whole cluster the primary could not be asked about is never emptied (the next start asks again).
    `if [ -n "\${unreachable:-}" ]; then echo "replica-${b.index}: the primary cannot be asked for its database system identifier; the data directory $PGDATA is kept" >&2; exit 1; fi`,
    // Emptied only once the primary accepts connections: a primary that does not leaves the directory as it was.
    `tries=${b.waitSeconds ?? 60}`,
    `until pg_isready -q -h ${b.primaryHost} -p ${b.primaryPort}; do`,
    `  tries=$((tries - 1)); [ "$tries" -gt 0 ] || { echo "replica-${b.index}: primary ${b.primaryHost}:${b.primaryPort} is not accepting connections" >&2; exit 1; }`,
    "  sleep 1",
    "done",
    `find "$PGDATA" -mindepth 1 -delete`,
    `psql -X -q -v ON_ERROR_STOP=1 ${shellQuote(`${conn} dbname=postgres`)} -c ${shellQuote(createSlot)} >/dev/null`,
    `pg_basebackup --pgdata="$PGDATA" --dbname=${shellQuote(`${conn} application_name=${replicaApplicationName(b.index)}`)} ` +
      `--slot=${slot} --write-recovery-conf --wal-method=stream --checkpoint=fast --no-password`,
    `echo "replica-${b.index}: base backup taken, streaming from slot ${slot}"`,
  ].join("\n") + "\n";
}
