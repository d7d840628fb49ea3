-- Creates the extensions the schema builds on, each in a schema of its own that PUBLIC cannot use.
-- pgcrypto (pgp_sym_encrypt/decrypt, hmac) backs the encrypted columns. A trusted extension's
-- functions belong to the bootstrap superuser and stay executable by PUBLIC, which nb_owner cannot
-- revoke; outside the project schema and without USAGE, nobody but nb_owner reaches them, and
-- applications use the granted helpers in R065 instead.

CREATE SCHEMA neuralblitz_crypto;
REVOKE CREATE, USAGE ON SCHEMA neuralblitz_crypto FROM PUBLIC;
CREATE EXTENSION pgcrypto WITH SCHEMA neuralblitz_crypto;
