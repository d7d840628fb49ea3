// Generated passwords for the superuser and every login role, kept in the stack's state as secrets:
// stable across `up`s, never typed by anyone, different per stack. The platforms take the ones they
// need to start (superuser, replication, pooler lookup); the database layer sets the rest on the roles.
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { LOGIN_ROLES, LoginRoleName, POOLED_LOGINS, PooledLogin } from "../schema/roles";
import { PlatformPasswords } from "./platform/types";

function generated(name: string, parent: pulumi.Resource, length = 32): pulumi.Output<string> {
  // Letters and digits only: safe unquoted in URLs, pgbouncer's auth file and shell; 32 of them are ~190 bits.
  const password = new random.RandomPassword(name, { length, special: false }, { parent });
  return pulumi.secret(password.result);
}

export class StackPasswords extends pulumi.ComponentResource {
  readonly admin: pulumi.Output<string>;
  readonly roles: Readonly<Record<LoginRoleName, pulumi.Output<string>>>;
  /** The key of the encrypted columns, which applications send per transaction (client/ withUser). */
  readonly dataKey: pulumi.Output<string>;
  /** pgBackRest's role (nb_backup, not a role of schema/roles.ts) where the platform runs pgBackRest. */
  readonly backup: pulumi.Output<string>;

  constructor(name: string, opts?: pulumi.ComponentResourceOptions) {
    super("neuralblitz:credentials:StackPasswords", name, {}, opts);
    this.admin = generated(`${name}-admin`, this);
    this.dataKey = generated(`${name}-data-key`, this, 48);
    this.backup = generated(`${name}-nb_backup`, this);
    this.roles = Object.fromEntries(LOGIN_ROLES.map((role) => [role, generated(`${name}-${role}`, this)])) as Record<LoginRoleName, pulumi.Output<string>>;
    this.registerOutputs({});
  }

  platform(): PlatformPasswords {
    return {
      admin: this.admin,
      replication: this.roles.nb_replicator,
      poolerAuth: this.roles.nb_pgbouncer,
      pooledLogins: Object.fromEntries(POOLED_LOGINS.map((role) => [role, this.roles[role]])) as Record<PooledLogin, pulumi.Output<string>>,
      backup: this.backup,
      readonlyLogin: this.roles.nb_readonly,
      monitor: this.roles.nb_monitor,
    };
  }
}
