// The stack's own certificate authority and the server certificates it signs, written once for every
// platform: the local stack keeps them as files in its directory (scripts/local/tls.ts), the Docker
// stack in its Pulumi state (infra/dynamic/tlsCertificates.ts), and both decide with the same
// function below whether a certificate must be issued again. Certificates are built and signed with
// node-forge (pure JavaScript, no system binary needed where `pulumi up` runs); keys come from
// Node's own crypto; checks use Node's X509Certificate.
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes } from "crypto";
import * as forge from "node-forge";

/** The CA lives ten years; it is replaced once it would expire before a certificate it signs. */
export const CA_LIFETIME_DAYS = 3650;
/** Server certificates live a year and are renewed by `nbdb up` / `pulumi up` in their last 30 days. */
export const SERVER_LIFETIME_DAYS = 365;
export const RENEW_BEFORE_DAYS = 30;
const DAY_MS = 86_400_000;

export interface KeyPair {
  /** PEM. */
  readonly cert: string;
  /** PEM (PKCS#8); a secret. */
  readonly key: string;
}

/** The names a server certificate carries: host names clients use and IP addresses. */
export interface ServerNames {
  /** Becomes the certificate's common name. */
  readonly name: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
}

/** Clients of the local stack (and the Docker stack's published ports) connect here. */
export const LOOPBACK_NAMES = { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] } as const;

function newKey(): { forgeKey: forge.pki.rsa.PrivateKey; pem: string; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { forgeKey, pem, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f; // positive
  return bytes.toString("hex");
}

function validity(cert: forge.pki.Certificate, now: Date, days: number): void {
  // An hour of slack for clocks slightly behind.
  cert.validity.notBefore = new Date(now.getTime() - 3_600_000);
  cert.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
}

/** A new certificate authority; `label` names the stack it belongs to. */
export function newCa(label: string, now: Date = new Date()): KeyPair {
  const key = newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.publicKey;
  cert.serialNumber = serialNumber();
  validity(cert, now, CA_LIFETIME_DAYS);
  const subject = [
    { name: "organizationName", value: "neuralblitz-db" },
    { name: "commonName", value: `neuralblitz-db ${label} CA` },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(key.forgeKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: key.pem };
}

/**
 * A server certificate signed by `ca` for `names`. `lifetimeDays` is for tests that need one about
 * to expire; everything else takes the default.
 */
export function issueServerCert(ca: KeyPair, names: ServerNames, now: Date = new Date(), lifetimeDays = SERVER_LIFETIME_DAYS): KeyPair {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const key = newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.publicKey;
  cert.serialNumber = serialNumber();
  validity(cert, now, lifetimeDays);
  cert.setSubject([
    { name: "organizationName", value: "neuralblitz-db" },
    { name: "commonName", value: names.name },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames: [...names.dnsNames.map((value) => ({ type: 2, value })), ...names.ipAddresses.map((ip) => ({ type: 7, ip }))] },
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: key.pem };
}

/** "DNS:localhost, IP Address:127.0.0.1", as Node's X509Certificate reports subjectAltName. */
function altNamesOf(names: ServerNames): string {
  return [...names.dnsNames.map((d) => `DNS:${d}`), ...names.ipAddresses.map((ip) => `IP Address:${ip}`)].join(", ");
}

function daysLeft(cert: X509Certificate, now: Date): number {
  return (new Date(cert.validTo).getTime() - now.getTime()) / DAY_MS;
}

/** Why the CA must be replaced (unreadable, or it would expire before a certificate it signs), or undefined. */
export function caProblem(ca: Partial<KeyPair> | undefined, now: Date = new Date()): string | undefined {
  if (!ca?.cert || !ca.key) return "there is none";
  try {
    const cert = new X509Certificate(ca.cert);
    if (!cert.ca) return "it is not a CA certificate";
    if (!cert.checkPrivateKey(createPrivateKey(ca.key))) return "its key does not match it";
    if (daysLeft(cert, now) < SERVER_LIFETIME_DAYS + RENEW_BEFORE_DAYS) return `it expires on ${cert.validTo}`;
    return undefined;
  } catch (e) {
    return `it cannot be read (${(e as Error).message})`;
  }
}

/**
 * Why a server certificate must be issued again, or undefined when it is good as it is: there is
 * none, it does not match its key, another CA signed it, its names differ from `names`, or it has
 * fewer than RENEW_BEFORE_DAYS left.
 */
export function serverCertProblem(pair: Partial<KeyPair> | undefined, caCert: string, names: ServerNames, now: Date = new Date()): string | undefined {
  if (!pair?.cert || !pair.key) return "there is none";
  try {
    const cert = new X509Certificate(pair.cert);
    const ca = new X509Certificate(caCert);
    if (!cert.checkPrivateKey(createPrivateKey(pair.key))) return "its key does not match it";
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return "the stack's CA did not sign it";
    if (cert.subjectAltName !== altNamesOf(names)) return `its names (${cert.subjectAltName}) are not ${altNamesOf(names)}`;
    const left = daysLeft(cert, now);
    if (left < RENEW_BEFORE_DAYS) return left < 0 ? `it expired on ${cert.validTo}` : `it expires on ${cert.validTo}`;
    return undefined;
  } catch (e) {
    return `it cannot be read (${(e as Error).message})`;
  }
}
