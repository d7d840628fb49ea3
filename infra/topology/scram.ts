// A SCRAM-SHA-256 verifier computed on the client, so a role's plain password never travels in a
// statement the server could log (PostgreSQL stores a verifier given as the password unchanged).
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "crypto";

const ITERATIONS = 4096;

export function scramSha256Verifier(password: string, salt: Buffer = randomBytes(16)): string {
  // Generated passwords are ASCII, for which SASLprep is the identity.
  const salted = pbkdf2Sync(password, salt, ITERATIONS, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${ITERATIONS}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/**
 * A verifier whose salt is derived from the role and password, so the same password always gives the
 * same text: a random salt would change a Pulumi input (a container upload, a Role's password), and so
 * update or replace it, on every `up`.
 */
export function stableScramVerifier(roleName: string, password: string): string {
  const salt = createHmac("sha256", password).update(`neuralblitz-db scram salt for ${roleName}`).digest().subarray(0, 16);
  return scramSha256Verifier(password, salt);
}
