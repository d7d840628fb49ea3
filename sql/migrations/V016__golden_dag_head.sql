-- Creates golden_dag_head: the GoldenDAG chain's last entry (its id and hash), a single row.
-- Every append locks it, so audited transactions take turns from their first audited change to
-- their commit and the chain follows commit order; verification also checks the tail against it.

CREATE TABLE neuralblitz.golden_dag_head (
  singleton  boolean PRIMARY KEY DEFAULT true,
  last_id    bigint,
  last_hash  bytea NOT NULL,
  CONSTRAINT golden_dag_head_singleton CHECK (singleton),
  CONSTRAINT golden_dag_head_hash_size CHECK (octet_length(last_hash) = 32)
);
INSERT INTO neuralblitz.golden_dag_head (last_id, last_hash) VALUES (NULL, decode(repeat('00', 32), 'hex'));
