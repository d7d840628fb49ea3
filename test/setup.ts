// Mocha root hooks: every test stack lives in a fresh directory the server user can reach, and
// every server a test started is stopped and its data removed when the run ends, pass or fail.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { down } from "../scripts/local/stack";
import { knownStacks } from "../scripts/local/state";

export const mochaHooks = {
  beforeAll(): void {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-test-"));
    fs.chmodSync(home, 0o755);
    process.env.NBDB_HOME = home;
  },
  async afterAll(): Promise<void> {
    const home = process.env.NBDB_HOME!;
    for (const stack of knownStacks()) {
      await down({ stack, purge: true, yes: true }).catch((e) => console.error(`cleanup of stack ${stack} failed: ${(e as Error).message}`));
    }
    fs.rmSync(home, { recursive: true, force: true });
  },
};
