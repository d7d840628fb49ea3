-- Creates the neuron history trigger (a neuron's first state and every change of it land in
-- quantum_neuron_history) and change_neuron_state(), the optimistic-locking way to change a neuron.
-- Deleting a neuron is not a state change: the audit trail records it, and a history row written
-- while its user is being erased would break the user_id foreign key. Re-runnable.

-- Runs as the writer of the neuron (who needs INSERT on the history for it), so the history row
-- passes the same row-level security as the neuron: it is filed under the neuron's user.
CREATE OR REPLACE FUNCTION neuralblitz.record_neuron_history() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  old_doc jsonb := CASE WHEN TG_OP = 'UPDATE' THEN pg_catalog.jsonb_build_object(
    'state', OLD.state, 'amplitude', OLD.amplitude, 'phase', OLD.phase, 'coherence', OLD.coherence,
    'entangled_ids', OLD.entangled_ids, 'network_id', OLD.network_id) END;
  new_doc jsonb := pg_catalog.jsonb_build_object(
    'state', NEW.state, 'amplitude', NEW.amplitude, 'phase', NEW.phase, 'coherence', NEW.coherence,
    'entangled_ids', NEW.entangled_ids, 'network_id', NEW.network_id);
BEGIN
  IF TG_OP = 'UPDATE' AND old_doc = new_doc THEN
    RETURN NULL;
  END IF;
  INSERT INTO neuralblitz.quantum_neuron_history (neuron_id, user_id, operation, old_state, new_state, old_version, new_version)
  VALUES (NEW.id, NEW.user_id, TG_OP, old_doc, new_doc,
          CASE WHEN TG_OP = 'UPDATE' THEN OLD.version END, NEW.version);
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER quantum_neurons_history
  AFTER INSERT OR UPDATE ON neuralblitz.quantum_neurons
  FOR EACH ROW EXECUTE FUNCTION neuralblitz.record_neuron_history();
REVOKE EXECUTE ON FUNCTION neuralblitz.record_neuron_history() FROM PUBLIC;

-- Change a neuron's state if nobody changed it since the caller read `p_expected_version`.
-- The UPDATE locks the row, so of two concurrent calls with the same version one wins and the
-- other, after waiting for it, finds the version moved on and gets SQLSTATE 40001 (retry after
-- re-reading). Returns the new version. Runs as the caller: row-level security applies.
CREATE OR REPLACE FUNCTION neuralblitz.change_neuron_state(
  p_neuron_id        uuid,
  p_expected_version bigint,
  p_state            jsonb,
  p_amplitude        double precision,
  p_phase            double precision,
  p_coherence        double precision
) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_new bigint;
  v_current bigint;
BEGIN
  UPDATE neuralblitz.quantum_neurons
     SET state = p_state, amplitude = p_amplitude, phase = p_phase, coherence = p_coherence,
         version = version + 1
   WHERE id = p_neuron_id AND version = p_expected_version
  RETURNING version INTO v_new;
  IF v_new IS NOT NULL THEN
    RETURN v_new;
  END IF;
  SELECT version INTO v_current FROM neuralblitz.quantum_neurons WHERE id = p_neuron_id;
  IF v_current IS NULL THEN
    RAISE EXCEPTION 'neuron % does not exist (or is not visible to this user)', p_neuron_id
      USING ERRCODE = 'no_data_found';
  END IF;
  RAISE EXCEPTION 'neuron % was changed concurrently: expected version %, found %', p_neuron_id, p_expected_version, v_current
    USING ERRCODE = 'serialization_failure', HINT = 'Re-read the neuron and apply the change to its current state.';
END
$$;
