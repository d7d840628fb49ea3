// Splits a bundle's text into its top-level statements, keeping each one's offset in the file.
// Transactional bundles are still sent whole (the server parses them); the split serves the
// bundles that must run one statement at a time outside a transaction, the check that a bundle
// does not control its own transaction, and naming the statement an error without a position
// came from. The split is PostgreSQL's own: libpg-query is the server's grammar and lexer
// (PostgreSQL 15, the oldest server version the platform runs) compiled to WASM, so a ';' inside
// a rule's action list, a function body or a quote is never mistaken for the end of a statement,
// and text the server could not parse is refused before it reaches a server.
import * as path from "path";
import { createSyncFn } from "synckit";

export interface SqlStatement {
  /** The statement's text from its first token up to (not including) its ';'. */
  readonly text: string;
  /** Offset of the statement's first token in the file text. */
  readonly offset: number;
  /** Its first keyword, lower-cased ('' when it starts with a quote or symbol). */
  readonly firstWord: string;
  /** PostgreSQL's parse node, e.g. `CreateStmt`, `TransactionStmt`. */
  readonly node: string;
  /** For a `TransactionStmt`, its kind as PostgreSQL names it (`TRANS_STMT_BEGIN`, `TRANS_STMT_ROLLBACK_TO`, ...). */
  readonly transactionKind?: string;
}

/** Text PostgreSQL's parser refuses; `index` is where in the text it stopped. */
export class SqlSyntaxError extends Error {
  constructor(
    readonly pgMessage: string,
    readonly index: number,
  ) {
    super(pgMessage);
    this.name = "SqlSyntaxError";
  }
}

interface ParsedStatement {
  readonly location: number;
  readonly length: number;
  readonly type: string;
  readonly transactionKind?: string;
}
type ParseOutcome = { version: number; statements: ParsedStatement[] } | { error: { message: string; cursorPosition?: number } };

let parseInWorker: ((sql: string) => ParseOutcome) | undefined;
/** The parser, started on first use (a worker thread that never keeps the process alive). */
function parse(sql: string): ParseOutcome {
  parseInWorker ??= createSyncFn<(sql: string) => Promise<ParseOutcome>>(path.join(__dirname, "pgParser.worker.js"));
  return parseInWorker(sql);
}

/** PostgreSQL's version number of the parser (e.g. 150001 for 15.1). */
export function parserVersion(): number {
  const outcome = parse("SELECT 1");
  if ("error" in outcome) throw new Error(outcome.error.message);
  return outcome.version;
}

/** Where the first token at or after `from` starts: whitespace, `--` and (nested) block comments skipped. */
function firstTokenAt(sql: string, from: number): number {
  let i = from;
  while (i < sql.length) {
    if (/\s/.test(sql[i])) i++;
    else if (sql.startsWith("--", i)) {
      const nl = sql.slice(i).search(/[\n\r]/);
      i = nl < 0 ? sql.length : i + nl + 1;
    } else if (sql.startsWith("/*", i)) {
      let depth = 0;
      while (i < sql.length) {
        if (sql.startsWith("/*", i)) (depth++, (i += 2));
        else if (sql.startsWith("*/", i)) {
          i += 2;
          if (--depth === 0) break;
        } else i++;
      }
    } else break;
  }
  return i;
}

/**
 * The top-level statements of `sql`, as PostgreSQL's parser delimits them. Throws SqlSyntaxError
 * (with PostgreSQL's message and where it stopped) when the text does not parse.
 */
export function splitStatements(sql: string): SqlStatement[] {
  if (sql.trim() === "") return [];
  const outcome = parse(sql);
  if ("error" in outcome) {
    const position = outcome.error.cursorPosition;
    throw new SqlSyntaxError(outcome.error.message, position === undefined ? 0 : indexOfPosition(sql, position + 1));
  }
  // The parser counts UTF-8 bytes; a statement runs from just after the previous ';', so its
  // leading comments are skipped to find its first token.
  const bytes = Buffer.from(sql, "utf8");
  const indexOfByte = (byte: number) => bytes.subarray(0, byte).toString("utf8").length;
  return outcome.statements.map((s) => {
    const offset = firstTokenAt(sql, indexOfByte(s.location));
    const end = s.length > 0 ? indexOfByte(s.location + s.length) : sql.length;
    const text = sql.slice(offset, end).trimEnd();
    const firstWord = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(text)?.[0].toLowerCase() ?? "";
    return { text, offset, firstWord, node: s.type, ...(s.transactionKind ? { transactionKind: s.transactionKind } : {}) };
  });
}

/** 1-based line and column of a character offset in a text. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - (before.lastIndexOf("\n") + 1) + 1;
  return { line, column };
}

/**
 * The string index of PostgreSQL's 1-based error position, which counts characters (code points),
 * not UTF-16 units.
 */
export function indexOfPosition(text: string, position: number): number {
  let index = 0;
  for (let n = 1; n < position && index < text.length; n++) index += text.codePointAt(index)! > 0xffff ? 2 : 1;
  return index;
}
