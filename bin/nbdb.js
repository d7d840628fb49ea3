#!/usr/bin/env node
// Entry point of the `nbdb` command: compiles the TypeScript sources on the fly (type errors are
// caught by `npm run typecheck`, not at every invocation, so start-up stays fast).
const path = require("path");
require("ts-node").register({ transpileOnly: true, project: path.join(__dirname, "..", "tsconfig.json") });
require("../scripts/nbdb.ts").main(process.argv);
