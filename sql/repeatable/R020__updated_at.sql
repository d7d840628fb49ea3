-- Creates touch_updated_at() and the trigger that keeps updated_at current on every mutable table.
-- Re-runnable: CREATE OR REPLACE throughout.

CREATE OR REPLACE FUNCTION neuralblitz.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.updated_at := pg_catalog.now();
  RETURN NEW;
END
$$;

-- Every ordinary table of the schema with an updated_at column gets the trigger, so a new mutable
-- table only needs the column.
DO $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT c.relname
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'updated_at' AND NOT a.attisdropped
            WHERE c.relnamespace = 'neuralblitz'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
  LOOP
    EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE UPDATE ON neuralblitz.%I
                      FOR EACH ROW EXECUTE FUNCTION neuralblitz.touch_updated_at()', t || '_touch_updated_at', t);
  END LOOP;
END
$$;
