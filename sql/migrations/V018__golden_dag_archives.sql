-- Creates golden_dag_archives: one row per audit partition archived (detached) with
-- archive_golden_dag_partition(), holding the last entry's id and hash, so verify_golden_dag() can
-- check that the entries still in the table continue the archived chain instead of reporting the
-- archived ones as missing.

CREATE TABLE neuralblitz.golden_dag_archives (
  partition_name  text PRIMARY KEY,
  first_id        bigint NOT NULL,
  last_id         bigint NOT NULL,
  last_hash       bytea NOT NULL,
  entries         bigint NOT NULL,
  archived_at     timestamptz NOT NULL DEFAULT now(),
  archived_by     text NOT NULL DEFAULT session_user,
  CONSTRAINT golden_dag_archives_range CHECK (first_id <= last_id),
  CONSTRAINT golden_dag_archives_hash_size CHECK (octet_length(last_hash) = 32)
);
-- verify_golden_dag() looks an anchor up by the entry it ends with.
CREATE UNIQUE INDEX golden_dag_archives_last_id_key ON neuralblitz.golden_dag_archives (last_id);
