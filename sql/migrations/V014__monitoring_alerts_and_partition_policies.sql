-- Creates monitoring_alerts (alert rules and their current firing state) and partition_policies
-- (how far ahead each time series is partitioned and how long its partitions are kept).
-- No user data in either: they are operated by the platform, not by users.

CREATE TABLE neuralblitz.monitoring_alerts (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  rule         text NOT NULL,
  metric       text NOT NULL,
  condition    text NOT NULL,
  threshold    double precision NOT NULL,
  window_size  interval NOT NULL DEFAULT '5 minutes',
  severity     text NOT NULL,
  state        text NOT NULL DEFAULT 'ok',
  fired_at     timestamptz,
  resolved_at  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT monitoring_alerts_condition CHECK (condition IN ('>', '>=', '<', '<=', '=', '!=')),
  CONSTRAINT monitoring_alerts_severity CHECK (severity IN ('info', 'warning', 'critical')),
  CONSTRAINT monitoring_alerts_state CHECK (state IN ('ok', 'pending', 'firing', 'resolved', 'silenced')),
  CONSTRAINT monitoring_alerts_window CHECK (window_size > interval '0'),
  CONSTRAINT monitoring_alerts_fired CHECK (state <> 'firing' OR fired_at IS NOT NULL),
  CONSTRAINT monitoring_alerts_resolved_after_fired CHECK (resolved_at IS NULL OR (fired_at IS NOT NULL AND resolved_at >= fired_at))
);
CREATE UNIQUE INDEX monitoring_alerts_rule_key ON neuralblitz.monitoring_alerts (rule);
-- Rules evaluated per metric: WHERE metric = $1.
CREATE INDEX monitoring_alerts_metric_idx ON neuralblitz.monitoring_alerts (metric);
-- Hot path: what is firing now, most severe and oldest first.
CREATE INDEX monitoring_alerts_firing_idx ON neuralblitz.monitoring_alerts (severity, fired_at) WHERE state = 'firing';

CREATE TABLE neuralblitz.partition_policies (
  table_name        text PRIMARY KEY,
  period            text NOT NULL,
  premake           integer NOT NULL,
  retention         interval,
  retention_action  text,
  -- New partitions of an append-only table get no UPDATE/DELETE/TRUNCATE for their owner and a
  -- TRUNCATE-refusing trigger (row triggers reach partitions by themselves, statement triggers don't).
  append_only       boolean NOT NULL DEFAULT false,
  CONSTRAINT partition_policies_period CHECK (period IN ('day', 'week', 'month')),
  CONSTRAINT partition_policies_premake CHECK (premake BETWEEN 1 AND 366),
  CONSTRAINT partition_policies_retention CHECK ((retention IS NULL) = (retention_action IS NULL) AND (retention IS NULL OR retention > interval '0')),
  CONSTRAINT partition_policies_retention_action CHECK (retention_action IN ('detach', 'drop')),
  -- The audit trail is never dropped: at most detached for archiving.
  CONSTRAINT partition_policies_audit_never_dropped CHECK (table_name <> 'golden_dag_audit' OR retention_action IS DISTINCT FROM 'drop')
);
INSERT INTO neuralblitz.partition_policies (table_name, period, premake, retention, retention_action, append_only) VALUES
  ('metrics',                 'day',   7, interval '90 days',  'drop',   false),
  ('quantum_neuron_history',  'week',  4, interval '2 years',  'detach', false),
  ('consciousness_snapshots', 'month', 3, NULL,                NULL,     false),
  ('golden_dag_audit',        'month', 3, NULL,                NULL,     true);
