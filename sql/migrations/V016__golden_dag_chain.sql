-- Creates the GoldenDAG hash chain: golden_dag_seals (one row per audit entry, written once the
-- entry's transaction has committed: the entry before it, that entry's hash, and this entry's hash)
-- and golden_dag_head (the chain's last entry). Entries are appended without any lock; the sealer
-- (seal_golden_dag(), R070) chains committed entries in commit order, so concurrent writers never
-- wait on one another and the chain still follows commit order.

CREATE TABLE neuralblitz.golden_dag_seals (
  entry_id      bigint PRIMARY KEY,
  -- The entry before it in the chain (NULL for the first); one successor each, so no fork.
  prev_id       bigint UNIQUE,
  prev_hash     bytea NOT NULL,
  entry_hash    bytea NOT NULL,
  committed_at  timestamptz NOT NULL,
  sealed_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT golden_dag_seals_hash_sizes CHECK (octet_length(prev_hash) = 32 AND octet_length(entry_hash) = 32)
);

CREATE TABLE neuralblitz.golden_dag_head (
  singleton  boolean PRIMARY KEY DEFAULT true,
  last_id    bigint,
  last_hash  bytea NOT NULL,
  CONSTRAINT golden_dag_head_singleton CHECK (singleton),
  CONSTRAINT golden_dag_head_hash_size CHECK (octet_length(last_hash) = 32)
);
INSERT INTO neuralblitz.golden_dag_head (last_id, last_hash) VALUES (NULL, decode(repeat('00', 32), 'hex'));
