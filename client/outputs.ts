// The shape of a stack's outputs: `.nbdb/<stack>/outputs.json` for the local stack, the exported
// outputs of the Pulumi program for deployed stacks (DESIGN.md, "Contracts").

export interface Endpoint {
  host: string;
  port: number;
}

export interface StackOutputs {
  stack: string;
  database: string;
  primary: Endpoint;
  replicas: Endpoint[];
  pooler: Endpoint & { poolMode: "transaction" };
  connections: {
    app: string;
    readonly: string;
    auditor: string;
    migrator: string;
    /** The local stack only. */
    admin?: string;
  };
}
