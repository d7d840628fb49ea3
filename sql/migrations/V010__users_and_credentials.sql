-- Creates users, api_keys and partner_configs: accounts, API authentication and partner settings.
-- ON DELETE: api_keys and partner_configs CASCADE from users (they mean nothing without their
-- user; accounts are normally soft-deleted, a hard delete is an erasure request).
-- Sensitive values are ciphertext only (pgcrypto, bytea) with a keyed hash for equality look-ups.

CREATE TABLE neuralblitz.users (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Every user-data table isolates on user_id; for users it is the row's own id.
  user_id               uuid GENERATED ALWAYS AS (id) STORED NOT NULL,
  username              text NOT NULL,
  email_encrypted       bytea NOT NULL,
  email_hmac            bytea NOT NULL,
  password_hash         text NOT NULL,
  mfa_secret_encrypted  bytea,
  status                text NOT NULL DEFAULT 'pending',
  last_login_at         timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  deleted_at            timestamptz,
  CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{2,63}$'),
  CONSTRAINT users_email_hmac_is_sha256 CHECK (octet_length(email_hmac) = 32),
  -- Ciphertext only: an OpenPGP symmetric message (pgp_sym_encrypt) starts with packet tag 0xC3.
  CONSTRAINT users_email_is_ciphertext CHECK (substring(email_encrypted FROM 1 FOR 1) = '\xc3'::bytea),
  CONSTRAINT users_mfa_secret_is_ciphertext CHECK (substring(mfa_secret_encrypted FROM 1 FOR 1) = '\xc3'::bytea),
  -- A password hash, never a password: argon2id, bcrypt or scrypt encodings only.
  CONSTRAINT users_password_is_hash CHECK (password_hash ~ '^\$(argon2id|2[aby]|scrypt)\$'),
  CONSTRAINT users_status CHECK (status IN ('pending', 'active', 'suspended', 'deleted')),
  CONSTRAINT users_soft_delete CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
CREATE UNIQUE INDEX users_username_key ON neuralblitz.users (username);
CREATE UNIQUE INDEX users_email_hmac_key ON neuralblitz.users (email_hmac);
-- Hot path: active accounts by last login (dormant-account sweeps, activity view).
CREATE INDEX users_active_last_login_idx ON neuralblitz.users (last_login_at) WHERE deleted_at IS NULL;

CREATE TABLE neuralblitz.api_keys (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id                uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  name                   text NOT NULL,
  key_prefix             text NOT NULL,
  key_hash               bytea NOT NULL,
  scopes                 text[] NOT NULL DEFAULT '{}',
  rate_limit_per_minute  integer NOT NULL DEFAULT 600,
  expires_at             timestamptz,
  revoked_at             timestamptz,
  last_used_at           timestamptz,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT api_keys_prefix_format CHECK (key_prefix ~ '^[A-Za-z0-9_]{8,16}$'),
  CONSTRAINT api_keys_hash_is_sha256 CHECK (octet_length(key_hash) = 32),
  CONSTRAINT api_keys_rate_limit CHECK (rate_limit_per_minute BETWEEN 1 AND 100000),
  CONSTRAINT api_keys_scopes_format CHECK (array_position(scopes, NULL) IS NULL),
  CONSTRAINT api_keys_expiry_after_creation CHECK (expires_at IS NULL OR expires_at > created_at),
  CONSTRAINT api_keys_name_length CHECK (length(name) BETWEEN 1 AND 100)
);
-- Authentication looks a key up by its prefix, then compares the hash.
CREATE UNIQUE INDEX api_keys_key_prefix_key ON neuralblitz.api_keys (key_prefix);
-- A user's active keys (key management page, rate limiting): partial, revoked keys excluded.
CREATE INDEX api_keys_user_active_idx ON neuralblitz.api_keys (user_id) WHERE revoked_at IS NULL;
-- Foreign key column (the partial index above does not serve ON DELETE CASCADE look-ups).
CREATE INDEX api_keys_user_id_idx ON neuralblitz.api_keys (user_id);
-- "Keys granted scope X": scopes @> ARRAY['x'].
CREATE INDEX api_keys_scopes_gin ON neuralblitz.api_keys USING gin (scopes);

CREATE TABLE neuralblitz.partner_configs (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id                uuid NOT NULL REFERENCES neuralblitz.users (id) ON DELETE CASCADE,
  partner                text NOT NULL,
  endpoint               text NOT NULL,
  credentials_encrypted  bytea,
  settings               jsonb NOT NULL DEFAULT '{}',
  enabled                boolean NOT NULL DEFAULT true,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT partner_configs_credentials_are_ciphertext CHECK (substring(credentials_encrypted FROM 1 FOR 1) = '\xc3'::bytea),
  CONSTRAINT partner_configs_partner_format CHECK (partner ~ '^[a-z0-9][a-z0-9_-]{1,63}$'),
  CONSTRAINT partner_configs_endpoint_https CHECK (endpoint ~ '^https://'),
  CONSTRAINT partner_configs_settings_object CHECK (jsonb_typeof(settings) = 'object')
);
-- One configuration per user and partner; also serves the user_id foreign key (leading column).
CREATE UNIQUE INDEX partner_configs_user_partner_key ON neuralblitz.partner_configs (user_id, partner);
-- "Configs whose settings contain {...}": settings @> '{...}'.
CREATE INDEX partner_configs_settings_gin ON neuralblitz.partner_configs USING gin (settings jsonb_path_ops);
