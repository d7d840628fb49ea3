// Splits a bundle's text into its top-level statements, keeping each one's offset in the file.
// Transactional bundles are still sent whole (the server parses them); the split serves the
// bundles that must run one statement at a time outside a transaction, the check that a bundle
// does not control its own transaction, and naming the statement an error without a position
// came from. It follows PostgreSQL's lexer where a ';' can hide: quotes, comments, dollar quotes
// and SQL-standard function bodies (BEGIN ATOMIC ... END), as psql does.

export interface SqlStatement {
  /** The statement's text from its first token up to (not including) its ';'. */
  readonly text: string;
  /** Offset of the statement's first token in the file text. */
  readonly offset: number;
  /** Its first keyword, lower-cased ('' when it starts with a quote or symbol). */
  readonly firstWord: string;
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

/** Where the text after `from` next continues outside a comment, quote or dollar quote. */
function skipQuoted(sql: string, from: number, quote: "'" | '"', backslashEscapes: boolean): number {
  let i = from + 1;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashEscapes && c === "\\") i += 2;
    else if (c === quote && sql[i + 1] === quote) i += 2;
    else if (c === quote) return i + 1;
    else i++;
  }
  return i;
}

function skipBlockComment(sql: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < sql.length) {
    if (sql.startsWith("/*", i)) {
      depth++;
      i += 2;
    } else if (sql.startsWith("*/", i)) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return i;
}

export function splitStatements(sql: string): SqlStatement[] {
  const statements: SqlStatement[] = [];
  let start = -1;
  let words: string[] = [];
  let startsWithWord = false;
  let atomicDepth = 0;
  const finish = (end: number) => {
    if (start >= 0) statements.push({ text: sql.slice(start, end).trimEnd(), offset: start, firstWord: startsWithWord ? words[0] : "" });
    start = -1;
    words = [];
    atomicDepth = 0;
  };
  // Inside CREATE FUNCTION/PROCEDURE, BEGIN ATOMIC ... END bodies hold ';' that do not end it.
  const definesRoutine = () => words[0] === "create" && words.slice(1, 4).some((w) => w === "function" || w === "procedure");

  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (sql.startsWith("--", i)) {
      const nl = sql.indexOf("\n", i);
      i = nl < 0 ? sql.length : nl + 1;
      continue;
    }
    if (sql.startsWith("/*", i)) {
      i = skipBlockComment(sql, i);
      continue;
    }
    if (c === ";" && atomicDepth === 0) {
      finish(i);
      i++;
      continue;
    }
    if (start < 0) {
      start = i;
      startsWithWord = WORD_START.test(c);
    }
    if (c === "'" || c === '"') {
      i = skipQuoted(sql, i, c, false);
    } else if (c === "$" && DOLLAR_TAG.test(sql.slice(i, i + 64))) {
      const tag = DOLLAR_TAG.exec(sql.slice(i, i + 64))![0];
      const end = sql.indexOf(tag, i + tag.length);
      i = end < 0 ? sql.length : end + tag.length;
    } else if (WORD_START.test(c)) {
      let j = i + 1;
      while (j < sql.length && WORD_CHAR.test(sql[j])) j++;
      const word = sql.slice(i, j).toLowerCase();
      words.push(word);
      if (definesRoutine()) {
        if (word === "begin" || (atomicDepth > 0 && word === "case")) atomicDepth++;
        else if (word === "end" && atomicDepth > 0) atomicDepth--;
      }
      // E'...' strings take backslash escapes.
      i = word === "e" && sql[j] === "'" ? skipQuoted(sql, j, "'", true) : j;
    } else {
      i++;
    }
  }
  finish(sql.length);
  return statements;
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
