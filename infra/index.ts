// The Pulumi program's entry point (Pulumi.yaml `main`): the stack outputs, in the outputs.json shape.
import { createStack } from "./stack";

const outputs = createStack();

export const stack = outputs.stack;
export const database = outputs.database;
export const primary = outputs.primary;
export const replicas = outputs.replicas;
export const pooler = outputs.pooler;
export const connections = outputs.connections;
// Beside the outputs.json shape: what client/ needs to read and write the encrypted columns.
export const dataKey = outputs.dataKey;
// The CAs the connection URLs verify against (public): write them where the URLs' sslrootcert points.
export const tls = outputs.tls;
// Docker stacks only (null elsewhere): each container's name and URN, for nbdb switchover/failover.
export const docker = outputs.docker;
