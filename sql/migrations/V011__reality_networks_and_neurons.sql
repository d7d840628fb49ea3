-- Creates reality_networks, reality_nodes and quantum_neurons.
-- ON DELETE: networks CASCADE from users; nodes CASCADE from their network (a node means nothing
-- outside it); neurons CASCADE from users and SET NULL (network_id) when their network goes, so a
-- neuron and its history survive a network's removal. Children carry user_id and reference the
-- parent by (id, user_id), so a child can never be filed under another user than its parent.

CREATE TABLE neuralblitz.reality_networks (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  name        text NOT NULL,
  topology    jsonb NOT NULL DEFAULT '{}',
  status      text NOT NULL DEFAULT 'provisioning',
  dimensions  integer NOT NULL DEFAULT 3,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT reality_networks_status CHECK (status IN ('provisioning', 'active', 'degraded', 'archived')),
  CONSTRAINT reality_networks_dimensions CHECK (dimensions BETWEEN 1 AND 11),
  CONSTRAINT reality_networks_topology_object CHECK (jsonb_typeof(topology) = 'object'),
  CONSTRAINT reality_networks_name_length CHECK (length(name) BETWEEN 1 AND 200)
);
CREATE UNIQUE INDEX reality_networks_user_name_key ON neuralblitz.reality_networks (user_id, name);
CREATE UNIQUE INDEX reality_networks_id_user_key ON neuralblitz.reality_networks (id, user_id);
-- "Networks whose topology contains {...}": topology @> '{...}'.
CREATE INDEX reality_networks_topology_gin ON neuralblitz.reality_networks USING gin (topology jsonb_path_ops);

CREATE TABLE neuralblitz.reality_nodes (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  network_id      uuid NOT NULL,
  user_id         uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  coordinates     double precision[] NOT NULL,
  status          text NOT NULL DEFAULT 'starting',
  health          real NOT NULL DEFAULT 1.0,
  last_heartbeat  timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT reality_nodes_network_fk FOREIGN KEY (network_id, user_id)
    REFERENCES neuralblitz.reality_networks (id, user_id) ON DELETE CASCADE,
  CONSTRAINT reality_nodes_status CHECK (status IN ('starting', 'online', 'degraded', 'offline')),
  CONSTRAINT reality_nodes_health CHECK (health BETWEEN 0 AND 1),
  CONSTRAINT reality_nodes_coordinates CHECK (cardinality(coordinates) BETWEEN 1 AND 11 AND array_position(coordinates, NULL) IS NULL)
);
CREATE INDEX reality_nodes_network_user_idx ON neuralblitz.reality_nodes (network_id, user_id);
CREATE INDEX reality_nodes_user_id_idx ON neuralblitz.reality_nodes (user_id);
-- Hot path: the unhealthy nodes of a network (alerting, reality_status_view).
CREATE INDEX reality_nodes_unhealthy_idx ON neuralblitz.reality_nodes (network_id, health)
  WHERE status IN ('degraded', 'offline') OR health < 0.5;

CREATE TABLE neuralblitz.quantum_neurons (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id        uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  network_id     uuid,
  label          text NOT NULL,
  state          jsonb NOT NULL DEFAULT '{}',
  amplitude      double precision NOT NULL DEFAULT 0,
  phase          double precision NOT NULL DEFAULT 0,
  coherence      double precision NOT NULL DEFAULT 1,
  entangled_ids  uuid[] NOT NULL DEFAULT '{}',
  -- Optimistic locking: every state change bumps it; see change_neuron_state().
  version        bigint NOT NULL DEFAULT 1,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT quantum_neurons_network_fk FOREIGN KEY (network_id, user_id)
    REFERENCES neuralblitz.reality_networks (id, user_id) ON DELETE SET NULL (network_id),
  CONSTRAINT quantum_neurons_amplitude CHECK (amplitude BETWEEN 0 AND 1),
  CONSTRAINT quantum_neurons_phase CHECK (phase >= 0 AND phase < 2 * pi()),
  CONSTRAINT quantum_neurons_coherence CHECK (coherence BETWEEN 0 AND 1),
  CONSTRAINT quantum_neurons_version CHECK (version >= 1),
  CONSTRAINT quantum_neurons_state_object CHECK (jsonb_typeof(state) = 'object'),
  CONSTRAINT quantum_neurons_not_self_entangled CHECK (NOT (id = ANY (entangled_ids)))
);
CREATE INDEX quantum_neurons_user_id_idx ON neuralblitz.quantum_neurons (user_id);
CREATE INDEX quantum_neurons_network_user_idx ON neuralblitz.quantum_neurons (network_id, user_id);
-- "Neurons entangled with X": entangled_ids @> ARRAY[x] (or && for any of several).
CREATE INDEX quantum_neurons_entangled_gin ON neuralblitz.quantum_neurons USING gin (entangled_ids);
-- "Neurons whose state contains {...}": state @> '{...}'.
CREATE INDEX quantum_neurons_state_gin ON neuralblitz.quantum_neurons USING gin (state jsonb_path_ops);
