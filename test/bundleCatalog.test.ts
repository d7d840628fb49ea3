// The bundle catalog, the statement splitter and the plan, without a server.
import { expect } from "chai";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Bundle, bundleFromText, checksumOf, loadCatalog } from "../infra/bundles/catalog";
import { LedgerEntry } from "../infra/bundles/ledger";
import { planBundles } from "../infra/bundles/plan";
import { SqlSyntaxError, indexOfPosition, lineAndColumn, parserVersion, splitStatements } from "../infra/bundles/sqlSplit";
import { POSTGRES_VERSIONS } from "../infra/config";
import { FIXTURES } from "./bundleHelpers";

function bundleDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-catalog-"));
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

/** A bundle directory holding one fixture of test/fixtures/bundles (without the ledger migration). */
function fixtureDir(fixture: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbdb-catalog-"));
  fs.cpSync(path.join(FIXTURES, fixture), dir, { recursive: true });
  return dir;
}

function ledgerOf(...bundles: Pick<Bundle, "name" | "kind" | "checksum">[]): Map<string, LedgerEntry> {
  return new Map(bundles.map((b) => [b.name, { name: b.name, kind: b.kind, checksum: b.checksum }]));
}

describe("SQL bundle catalog", () => {
  describe("splitStatements", () => {
    it("splits at top-level semicolons only, keeping each statement's offset in the file", () => {
      const sql = [
        "-- header; not a statement",
        "SELECT 'a;b', \"x;y\" FROM t; /* c; /* nested; */ still; */",
        "SELECT E'it\\'s;', $$ ; $$, $fn$ $$ ; $fn$;",
        ";;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;",
        "SELECT $1",
      ].join("\n");
      const statements = splitStatements(sql);
      expect(statements.map((s) => s.text)).to.deep.equal([
        "SELECT 'a;b', \"x;y\" FROM t",
        "SELECT E'it\\'s;', $$ ; $$, $fn$ $$ ; $fn$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END",
        "SELECT $1",
      ]);
      for (const s of statements) expect(sql.slice(s.offset, s.offset + s.text.length)).to.equal(s.text);
      expect(statements.map((s) => s.firstWord)).to.deep.equal(["select", "select", "create", "select"]);
    });

    it("keeps a rule's action list whole: CREATE RULE ... DO ALSO (a; b) is one statement", () => {
      const rule = "CREATE RULE log_insert AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))";
      const statements = splitStatements(`${rule};\nSELECT 1;\n`);
      expect(statements.map((s) => s.text)).to.deep.equal([rule, "SELECT 1"]);
      expect(statements.map((s) => s.node)).to.deep.equal(["RuleStmt", "SelectStmt"]);
    });

    it("ends a function whose parameter is named begin at its ';': the next statement is its own", () => {
      const fn = "CREATE FUNCTION f(begin integer) RETURNS integer LANGUAGE sql AS 'SELECT begin'";
      const statements = splitStatements(`${fn};\nCREATE TABLE t (id integer);\n`);
      expect(statements.map((s) => s.text)).to.deep.equal([fn, "CREATE TABLE t (id integer)"]);
      expect(statements[1].offset).to.equal(fn.length + 2);
    });

    it("counts offsets in characters after multi-byte text (the parser counts bytes)", () => {
      const sql = "-- héllo 😀\nSELECT 'é😀';\n/* ü */ SELECT 2;";
      const statements = splitStatements(sql);
      expect(statements.map((s) => s.text)).to.deep.equal(["SELECT 'é😀'", "SELECT 2"]);
      for (const s of statements) expect(sql.slice(s.offset, s.offset + s.text.length)).to.equal(s.text);
    });

    it("refuses text PostgreSQL cannot parse with its message and where it stopped", () => {
      const sql = "SELECT 1;\nSELECT 'é' FROM WHERE;";
      expect(() => splitStatements(sql)).to.throw(SqlSyntaxError, 'syntax error at or near "WHERE"');
      try {
        splitStatements(sql);
      } catch (e) {
        expect(lineAndColumn(sql, (e as SqlSyntaxError).index)).to.deep.equal({ line: 2, column: 17 });
      }
    });

    it("is PostgreSQL 15's parser, the oldest server version the platform runs", () => {
      expect(Math.floor(parserVersion() / 10000)).to.equal(Number(POSTGRES_VERSIONS[0]));
    });

    it("maps PostgreSQL's character positions to line and column, counting astral characters once", () => {
      const sql = "SELECT '😀';\nSELECT x;";
      // PostgreSQL counts 😀 as one character: 'x' is character 20.
      const index = indexOfPosition(sql, 20);
      expect(sql[index]).to.equal("x");
      expect(lineAndColumn(sql, index)).to.deep.equal({ line: 2, column: 8 });
    });
  });

  describe("loadCatalog", () => {
    it("orders the repository's bundles: migrations by version, then repeatable bundles by declared order", () => {
      const catalog = loadCatalog();
      expect(catalog[0]).to.include({ name: "V001__bundle_ledger", kind: "versioned", order: 1, transactional: true });
      expect(catalog.map((b) => b.name)).to.include.members(["V002__extensions", "R010__schema_settings"]);
      const kinds = catalog.map((b) => b.kind);
      expect(kinds.lastIndexOf("versioned")).to.be.lessThan(kinds.indexOf("repeatable"));
      for (const kind of ["versioned", "repeatable"]) {
        const orders = catalog.filter((b) => b.kind === kind).map((b) => b.order);
        expect(orders).to.deep.equal([...orders].sort((a, b) => a - b));
      }
      for (const b of catalog) expect(b.checksum).to.equal(checksumOf(b.sql)).and.match(/^[0-9a-f]{64}$/);
    });

    it("gives a file checked out with CRLF line ends or a byte-order mark the same checksum", () => {
      const lf = bundleFromText("a.sql", "versioned", 1, "V001__a", "SELECT 1;\nSELECT 2;\n");
      const crlf = bundleFromText("a.sql", "versioned", 1, "V001__a", "\uFEFFSELECT 1;\r\nSELECT 2;\r\n");
      expect(crlf.checksum).to.equal(lf.checksum);
    });

    it("refuses a misnamed bundle file, naming it and the expected form", () => {
      const dir = bundleDir({ "migrations/V001__ok.sql": "SELECT 1;", "migrations/v2_add_things.sql": "SELECT 2;" });
      expect(() => loadCatalog(dir)).to.throw(/v2_add_things\.sql: a versioned bundle must be named like V012__add_metrics\.sql/);
    });

    it("refuses two bundles with the same number", () => {
      const dir = bundleDir({ "repeatable/R010__a.sql": "SELECT 1;", "repeatable/R010__b.sql": "SELECT 2;" });
      expect(() => loadCatalog(dir)).to.throw(/R010__a\.sql and .*R010__b\.sql share the number 10/);
    });

    it("refuses a transactional bundle that commits on its own, with file and line", () => {
      expect(() => bundleFromText("sql/migrations/V003__x.sql", "versioned", 3, "V003__x", "-- x\nCREATE TABLE neuralblitz.a ();\nCOMMIT;\n")).to.throw(
        /sql\/migrations\/V003__x\.sql:3:1: a bundle must not control its transaction \('COMMIT'\).*-- nbdb:no-transaction/,
      );
    });

    it("tells savepoints from statements that end the transaction, whatever their spelling", () => {
      const ok = bundleFromText("f.sql", "versioned", 1, "V001__f", "SAVEPOINT s;\nSELECT 1;\nROLLBACK TO SAVEPOINT s;\nRELEASE s;\n");
      expect(ok.transactional).to.equal(true);
      for (const control of ["END", "ABORT", "START TRANSACTION", "BEGIN ISOLATION LEVEL SERIALIZABLE", "PREPARE TRANSACTION 'x'", "rollback"]) {
        expect(() => bundleFromText("f.sql", "versioned", 1, "V001__f", `SELECT 1;\n  ${control};\n`), control).to.throw(/f\.sql:2:3: a bundle must not control its transaction/);
      }
    });

    it("refuses a bundle PostgreSQL's parser refuses when it is read, naming file, line, column and the parser's message", () => {
      const dir = fixtureDir("broken");
      expect(() => loadCatalog(dir)).to.throw(/V910__broken\.sql:7:53: PostgreSQL's parser refuses the bundle: syntax error at or near ","\. Nothing was applied/);
    });

    it("reads the no-transaction declaration from the header only", () => {
      const declared = bundleFromText("f.sql", "versioned", 1, "V001__f", "-- nbdb:no-transaction\n-- why\nCREATE INDEX CONCURRENTLY i ON t (c);\n");
      const buried = bundleFromText("f.sql", "versioned", 1, "V001__f", "SELECT 1;\n-- nbdb:no-transaction\nSELECT 2;\n");
      expect(declared.transactional).to.equal(false);
      expect(buried.transactional).to.equal(true);
    });
  });

  describe("planBundles", () => {
    const v1 = bundleFromText("m/V001__a.sql", "versioned", 1, "V001__a", "SELECT 1;");
    const v2 = bundleFromText("m/V002__b.sql", "versioned", 2, "V002__b", "SELECT 2;");
    const v3 = bundleFromText("m/V003__c.sql", "versioned", 3, "V003__c", "SELECT 3;");
    const r1 = bundleFromText("r/R010__v.sql", "repeatable", 10, "R010__v", "SELECT 10;");

    it("marks unapplied bundles new and applied ones unchanged", () => {
      const plan = planBundles([v1, v2, r1], ledgerOf(v1));
      expect(plan.map((e) => [e.bundle.name, e.status])).to.deep.equal([
        ["V001__a", "unchanged"],
        ["V002__b", "new"],
        ["R010__v", "new"],
      ]);
    });

    it("re-applies a changed repeatable bundle", () => {
      const plan = planBundles([v1, r1], ledgerOf(v1, { ...r1, checksum: checksumOf("old") }));
      expect(plan[1]).to.include({ status: "changed", appliedChecksum: checksumOf("old") });
    });

    it("refuses an edited migration with both checksums and the name the new migration should take", () => {
      const plan = planBundles([v1, v2], ledgerOf({ ...v1, checksum: checksumOf("as applied") }));
      expect(plan[0].status).to.equal("refused");
      expect(plan[0].reason).to.include(checksumOf("as applied")).and.include(v1.checksum).and.include("new migration, V003__<name>.sql");
    });

    it("refuses a new migration numbered below one already applied", () => {
      const plan = planBundles([v1, v2, v3], ledgerOf(v1, v3));
      expect(plan[1].status).to.equal("refused");
      expect(plan[1].reason).to.match(/V002__b is new, but a later one \(version 3\) was already applied.*V004__b\.sql/);
    });

    it("refuses it too when the deploy carries that one bundle only (as a SqlBundle resource does)", () => {
      const plan = planBundles([v2], ledgerOf(v1, v3));
      expect(plan[0].status).to.equal("refused");
    });
  });
});
