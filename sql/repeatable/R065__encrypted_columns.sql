-- Creates the helpers for encrypted columns: encrypt_secret()/decrypt_secret() (pgcrypto OpenPGP,
-- AES-256) and lookup_hash() (HMAC-SHA-256 for equality look-ups, e.g. users.email_hmac). The key
-- comes from the caller per transaction (neuralblitz.set_user_context(user, $1), R060); it is never stored
-- in a table, a database or role default, or a log. A missing key is an error, never plaintext.
-- pgcrypto itself lives in neuralblitz_crypto, which only nb_owner can use (V002).

CREATE OR REPLACE FUNCTION neuralblitz.data_key() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  k text := pg_catalog.current_setting('nb.data_key', true);
BEGIN
  -- Only a key set for this transaction by set_user_context() counts (R060): one left at session
  -- level on a pooled connection never decrypts anything.
  IF k IS NULL OR pg_catalog.length(k) < 32
     OR pg_catalog.current_setting('nb.context_at', true) IS DISTINCT FROM EXTRACT(epoch FROM pg_catalog.now())::text THEN
    RAISE EXCEPTION 'no data key for this transaction'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Set the stack''s data key per transaction: SELECT neuralblitz.set_user_context(<user id or NULL>, $1) (client withUser() does).';
  END IF;
  RETURN k;
END
$$;

CREATE OR REPLACE FUNCTION neuralblitz.encrypt_secret(p_plain text) RETURNS bytea
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  -- s2k-mode=1: the key is random, not a password, so key stretching would only cost time.
  SELECT CASE WHEN p_plain IS NULL THEN NULL
              ELSE neuralblitz_crypto.pgp_sym_encrypt(p_plain, neuralblitz.data_key(), 'cipher-algo=aes256, s2k-mode=1') END
$$;

CREATE OR REPLACE FUNCTION neuralblitz.decrypt_secret(p_cipher bytea) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN p_cipher IS NULL THEN NULL ELSE neuralblitz_crypto.pgp_sym_decrypt(p_cipher, neuralblitz.data_key()) END
$$;

CREATE OR REPLACE FUNCTION neuralblitz.lookup_hash(p_value text) RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  -- A key of its own, derived from the data key, so hashes and ciphertexts never share one.
  SELECT neuralblitz_crypto.hmac(pg_catalog.convert_to(p_value, 'UTF8'), pg_catalog.sha256(pg_catalog.convert_to('nb-lookup:' || neuralblitz.data_key(), 'UTF8')), 'sha256')
$$;

REVOKE EXECUTE ON FUNCTION neuralblitz.data_key() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION neuralblitz.encrypt_secret(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION neuralblitz.decrypt_secret(bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION neuralblitz.lookup_hash(text) FROM PUBLIC;
