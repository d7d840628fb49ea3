// PostgreSQL's own parser (libpg-query: the server's grammar and lexer compiled to WASM) in a
// worker thread. sqlSplit.ts calls it synchronously through synckit, since the WASM module only
// loads asynchronously and bundles are read synchronously (the Pulumi program declares them while
// it is being constructed). Plain JavaScript so the worker starts without a TypeScript compiler.
"use strict";
const { runAsWorker } = require("synckit");
const { loadModule, parseSync } = require("libpg-query");

runAsWorker(async (sql) => {
  await loadModule();
  let tree;
  try {
    tree = parseSync(sql);
  } catch (e) {
    // cursorPosition is 0-based and counts characters; undefined when the parser gave none.
    return { error: { message: e.message, cursorPosition: e.sqlDetails ? e.sqlDetails.cursorPosition : undefined } };
  }
  return {
    version: tree.version,
    // stmt_location and stmt_len count UTF-8 bytes; a missing location is 0, a missing length "to the end".
    statements: (tree.stmts || []).map((s) => {
      const type = Object.keys(s.stmt)[0];
      return { location: s.stmt_location || 0, length: s.stmt_len || 0, type, transactionKind: type === "TransactionStmt" ? s.stmt.TransactionStmt.kind : undefined };
    }),
  };
});
