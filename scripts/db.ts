// One-off connections of the nbdb commands: connect, run, always end the client.
import { Client } from "pg";

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>, applicationName = "nbdb"): Promise<T> {
  const client = new Client({ connectionString: url, application_name: applicationName });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
