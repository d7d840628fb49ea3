-- Creates consciousness_records: how a subject's consciousness evolves, one row per observation.
-- ON DELETE: CASCADE from users. The subject is polymorphic (a neuron, a network or a node), so
-- it is a kind and an id without a foreign key: records outlive the subjects they describe.

CREATE TABLE neuralblitz.consciousness_records (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id       uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  subject_kind  text NOT NULL,
  subject_id    uuid NOT NULL,
  level         numeric(6, 3) NOT NULL,
  stage         text NOT NULL,
  attributes    jsonb NOT NULL DEFAULT '{}',
  recorded_at   timestamptz NOT NULL DEFAULT now(),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT consciousness_records_subject_kind CHECK (subject_kind IN ('neuron', 'network', 'node')),
  CONSTRAINT consciousness_records_level CHECK (level BETWEEN 0 AND 100),
  CONSTRAINT consciousness_records_stage CHECK (stage IN ('dormant', 'emergent', 'aware', 'reflective', 'transcendent')),
  CONSTRAINT consciousness_records_attributes_object CHECK (jsonb_typeof(attributes) = 'object')
);
CREATE UNIQUE INDEX consciousness_records_id_user_key ON neuralblitz.consciousness_records (id, user_id);
-- A user's evolution over time (consciousness_metrics_view, timelines); serves the user_id FK.
CREATE INDEX consciousness_records_user_recorded_idx ON neuralblitz.consciousness_records (user_id, recorded_at);
-- A subject's evolution: WHERE subject_kind = $1 AND subject_id = $2 ORDER BY recorded_at.
CREATE INDEX consciousness_records_subject_idx ON neuralblitz.consciousness_records (subject_kind, subject_id, recorded_at);
-- "Records whose attributes contain {...}": attributes @> '{...}'.
CREATE INDEX consciousness_records_attributes_gin ON neuralblitz.consciousness_records USING gin (attributes jsonb_path_ops);
