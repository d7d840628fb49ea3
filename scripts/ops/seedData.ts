// Deterministic development data: the same --seed (and day) gives the same rows. A small seeded
// PRNG (mulberry32) drives every choice; nothing reads the clock but the caller's `asOf`.
import { createHash } from "crypto";

export type Random = () => number;

export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rand: Random, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

export function uuid(rand: Random): string {
  const b = Array.from({ length: 16 }, () => Math.floor(rand() * 256));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A well-formed argon2id encoding (never a real password's): the users table only takes hashes. */
export function passwordHash(rand: Random): string {
  const b64 = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256))).toString("base64").replace(/=+$/, "");
  return `$argon2id$v=19$m=65536,t=3,p=4$${b64(16)}$${b64(32)}`;
}

/** One line of COPY's text format: tabs between fields, \N for NULL, backslash escapes. */
export function copyLine(values: readonly unknown[]): string {
  return (
    values
      .map((v) => {
        if (v === null || v === undefined) return "\\N";
        const text = v instanceof Date ? v.toISOString() : typeof v === "object" ? JSON.stringify(v) : String(v);
        return text.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r");
      })
      .join("\t") + "\n"
  );
}

/** A PostgreSQL array literal of simple values (no quoting needed for uuids, numbers, plain words). */
export function pgArray(values: readonly (string | number)[]): string {
  return `{${values.join(",")}}`;
}
