-- Creates the range-partitioned time series: metrics (by day), quantum_neuron_history (by ISO
-- week), consciousness_snapshots (by month) and golden_dag_audit (by month), each with a DEFAULT
-- partition for strays. Partitions are created ahead and retired by run_partition_maintenance()
-- (R040__partition_maintenance.sql) according to partition_policies (V014).
-- ON DELETE: history and snapshots CASCADE from users (an erasure request removes them);
-- history has no foreign key to its neuron, so it survives the neuron; snapshots CASCADE from
-- their record (a snapshot means nothing without it). The audit trail references nothing.
-- Primary keys include the partition key, as PostgreSQL requires on partitioned tables.

CREATE TABLE neuralblitz.metrics (
  id      bigint GENERATED ALWAYS AS IDENTITY,
  ts      timestamptz NOT NULL,
  name    text NOT NULL,
  value   double precision NOT NULL,
  labels  jsonb NOT NULL DEFAULT '{}',
  source  text NOT NULL,
  PRIMARY KEY (id, ts),
  CONSTRAINT metrics_name_format CHECK (name ~ '^[a-z_][a-z0-9_.:]{0,127}$'),
  CONSTRAINT metrics_labels_object CHECK (jsonb_typeof(labels) = 'object'),
  CONSTRAINT metrics_value_finite CHECK (value NOT IN ('NaN', 'Infinity', '-Infinity'))
) PARTITION BY RANGE (ts);
CREATE TABLE neuralblitz.metrics_default PARTITION OF neuralblitz.metrics DEFAULT;
-- Window scans over time: tiny, and ts correlates with insertion order.
CREATE INDEX metrics_ts_brin ON neuralblitz.metrics USING brin (ts) WITH (pages_per_range = 32);
-- One metric over a window: WHERE name = $1 AND ts >= $2 AND ts < $3 (alert evaluation, roll-ups).
CREATE INDEX metrics_name_ts_idx ON neuralblitz.metrics (name, ts);
-- "Series with labels {...}": labels @> '{...}'.
CREATE INDEX metrics_labels_gin ON neuralblitz.metrics USING gin (labels jsonb_path_ops);

CREATE TABLE neuralblitz.quantum_neuron_history (
  id           bigint GENERATED ALWAYS AS IDENTITY,
  neuron_id    uuid NOT NULL,
  user_id      uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  operation    text NOT NULL,
  old_state    jsonb,
  new_state    jsonb,
  old_version  bigint,
  new_version  bigint,
  changed_by   text NOT NULL DEFAULT current_user,
  changed_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (id, changed_at),
  CONSTRAINT quantum_neuron_history_operation CHECK (operation IN ('INSERT', 'UPDATE'))
) PARTITION BY RANGE (changed_at);
CREATE TABLE neuralblitz.quantum_neuron_history_default PARTITION OF neuralblitz.quantum_neuron_history DEFAULT;
CREATE INDEX quantum_neuron_history_changed_at_brin ON neuralblitz.quantum_neuron_history USING brin (changed_at);
-- A neuron's timeline: WHERE neuron_id = $1 ORDER BY changed_at.
CREATE INDEX quantum_neuron_history_neuron_idx ON neuralblitz.quantum_neuron_history (neuron_id, changed_at);
CREATE INDEX quantum_neuron_history_user_id_idx ON neuralblitz.quantum_neuron_history (user_id);

CREATE TABLE neuralblitz.consciousness_snapshots (
  id           bigint GENERATED ALWAYS AS IDENTITY,
  record_id    uuid NOT NULL,
  user_id      uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  snapshot     jsonb NOT NULL,
  captured_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (id, captured_at),
  CONSTRAINT consciousness_snapshots_record_fk FOREIGN KEY (record_id, user_id)
    REFERENCES neuralblitz.consciousness_records (id, user_id) ON DELETE CASCADE,
  CONSTRAINT consciousness_snapshots_snapshot_object CHECK (jsonb_typeof(snapshot) = 'object')
) PARTITION BY RANGE (captured_at);
CREATE TABLE neuralblitz.consciousness_snapshots_default PARTITION OF neuralblitz.consciousness_snapshots DEFAULT;
CREATE INDEX consciousness_snapshots_captured_at_brin ON neuralblitz.consciousness_snapshots USING brin (captured_at);
-- A record's snapshots in time order; serves the (record_id, user_id) foreign key.
CREATE INDEX consciousness_snapshots_record_idx ON neuralblitz.consciousness_snapshots (record_id, user_id, captured_at);
CREATE INDEX consciousness_snapshots_user_id_idx ON neuralblitz.consciousness_snapshots (user_id);

CREATE TABLE neuralblitz.golden_dag_audit (
  id           bigint GENERATED ALWAYS AS IDENTITY,
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  table_name   text NOT NULL,
  operation    text NOT NULL,
  row_pk       jsonb NOT NULL,
  db_role      text NOT NULL,
  app_user_id  uuid,
  old_values   jsonb,
  new_values   jsonb,
  -- Its place in the hash chain is kept in golden_dag_seals (V016), written once it has committed.
  PRIMARY KEY (id, recorded_at),
  CONSTRAINT golden_dag_audit_operation CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE'))
) PARTITION BY RANGE (recorded_at);
CREATE TABLE neuralblitz.golden_dag_audit_default PARTITION OF neuralblitz.golden_dag_audit DEFAULT;
CREATE INDEX golden_dag_audit_recorded_at_brin ON neuralblitz.golden_dag_audit USING brin (recorded_at);
-- An object's audit history: WHERE table_name = $1 AND row_pk = $2 ORDER BY id.
CREATE INDEX golden_dag_audit_row_idx ON neuralblitz.golden_dag_audit (table_name, row_pk, id);
