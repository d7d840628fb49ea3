// The privilege model (schema/privileges.ts) as @pulumi/postgresql arguments. Every Grant comes from
// grantStatement(), the function the local stack's GRANT/REVOKE statements come from too.
import * as postgresql from "@pulumi/postgresql";
import { DATABASE, SCHEMA } from "../../schema/roles";
import { DefaultPrivilegeSpec, GrantSpec, OBJECT_OWNER, grantName, grantStatement } from "../../schema/privileges";

/**
 * The one place a model object becomes a provider object. Tables and views keep their names. A
 * function is named WITHOUT its argument list: the provider quotes the name and reads privileges
 * back per pg_proc.proname, so a signature would be granted but never found again on refresh (drift
 * would go unseen). A bare name means "the function of that name", which is unambiguous only while
 * no granted function is overloaded; refuseOverloads() stops a model where one is.
 */
function providerObject(objectType: GrantSpec["objectType"], object: string): string {
  return objectType === "function" ? object.slice(0, object.indexOf("(")) : object;
}

function refuseOverloads(grants: readonly GrantSpec[]): void {
  const signatures = new Map<string, string>();
  for (const { object } of grants.filter((g) => g.objectType === "function")) {
    const name = providerObject("function", object);
    const other = signatures.get(name);
    if (other !== undefined && other !== object) {
      throw new Error(
        `schema/privileges.ts grants on two functions named ${name} (${other} and ${object}): @pulumi/postgresql names functions without their arguments, ` +
          `so it cannot tell them apart. Give one of them another name.`,
      );
    }
    signatures.set(name, object);
  }
}

function grantArgs(g: GrantSpec): postgresql.GrantArgs {
  const s = grantStatement(g);
  // An empty `objects` would mean every object of the type in the schema.
  if ((s.objectType === "table" || s.objectType === "function") && s.objects.length === 0) throw new Error(`grant ${JSON.stringify(g)} names no object`);
  return {
    database: s.database,
    role: s.role,
    objectType: s.objectType,
    schema: s.schema,
    objects: s.objects.length > 0 ? s.objects.map((o) => providerObject(s.objectType, o)) : undefined,
    privileges: [...s.privileges],
  };
}

export interface GrantResourceSpec {
  readonly name: string;
  readonly args: postgresql.GrantArgs;
  /** On tables or functions, which exist only once the bundles have run. */
  readonly onBundleObjects: boolean;
}

/** One Grant per GrantSpec, named for who gets privileges on what. */
export function grantResources(grants: readonly GrantSpec[]): GrantResourceSpec[] {
  refuseOverloads(grants);
  return grants.map((g) => ({ name: grantName(g), args: grantArgs(g), onBundleObjects: g.objectType === "table" || g.objectType === "function" }));
}

/**
 * REVOKE ALL ON DATABASE neuralblitz FROM PUBLIC (CONNECT and TEMPORARY, which PostgreSQL gives
 * PUBLIC by default). The provider's documented way to revoke from PUBLIC is a Grant to role
 * "public" with no privileges: it runs the REVOKE and grants nothing, so it is not a grant to PUBLIC.
 */
export const PUBLIC_DATABASE_REVOKE: postgresql.GrantArgs = { database: DATABASE, role: "public", objectType: "database", privileges: [] };

export function defaultPrivilegeArgs(d: DefaultPrivilegeSpec): postgresql.DefaultPrivilegesArgs {
  return { database: DATABASE, schema: SCHEMA, owner: OBJECT_OWNER, role: d.role, objectType: d.objectType, privileges: [...d.privileges] };
}

/** Who gets what on the future objects of whom, as a resource name. */
export function defaultPrivilegeName(d: DefaultPrivilegeSpec): string {
  return `${d.role}-default-on-${d.objectType}s-of-${OBJECT_OWNER}`.replace(/_/g, "-");
}
