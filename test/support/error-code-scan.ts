import fs from "node:fs";
import path from "node:path";
import ts from "typescript";

/** Where a code literal was found, and in what form. */
export interface FoundCode {
  code: string;
  file: string;
  line: number;
  /** `new`/`super` of an error class, `isMystError`'s codes, a `…Code` type, or a `code:` field. */
  how: "constructor" | "isMystError" | "type" | "field";
}

const CODE = /^[A-Z][A-Z0-9_]*$/;

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return filesUnder(p);
    return e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [p] : [];
  });
}

/**
 * Every error-code literal in the TypeScript under `dir`, read from the syntax (no type checker,
 * so it is quick): the first argument of `new X(…)` and `super(…)` where X is MystError or a class
 * that extends it (found in the same files), the codes named to `isMystError`, the string literal
 * types of type aliases whose name ends in `Code`, and `code: "…"` fields of error answers.
 */
export function scanErrorCodes(dir: string, root = dir): FoundCode[] {
  const sources = filesUnder(dir).map((f) => ts.createSourceFile(f, fs.readFileSync(f, "utf8"), ts.ScriptTarget.ES2022, true));
  // The error classes: MystError and, transitively, every class extending one of them.
  const parents = new Map<string, string>();
  for (const sf of sources)
    ts.forEachChild(sf, function visit(n): void {
      if (ts.isClassDeclaration(n) && n.name) {
        const ext = n.heritageClauses?.find((h) => h.token === ts.SyntaxKind.ExtendsKeyword)?.types[0]?.expression;
        if (ext && ts.isIdentifier(ext)) parents.set(n.name.text, ext.text);
      }
      ts.forEachChild(n, visit);
    });
  const isErrorClass = (name: string): boolean => {
    for (let c: string | undefined = name, hops = 0; c && hops < 20; c = parents.get(c), hops++) if (c === "MystError") return true;
    return false;
  };
  const found: FoundCode[] = [];
  for (const sf of sources) {
    const file = path.relative(root, sf.fileName);
    const add = (node: ts.Node, code: string, how: FoundCode["how"]) => {
      if (CODE.test(code)) found.push({ code, file, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, how });
    };
    const literal = (n: ts.Node | undefined) => (n && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) ? n.text : undefined);
    const visit = (n: ts.Node, klass?: string, inCodeType = false): void => {
      if (ts.isClassDeclaration(n) && n.name) klass = n.name.text;
      if (ts.isTypeAliasDeclaration(n) && /Code$/.test(n.name.text)) inCodeType = true;
      if (inCodeType && ts.isLiteralTypeNode(n) && ts.isStringLiteral(n.literal)) add(n, n.literal.text, "type");
      if (ts.isNewExpression(n) && ts.isIdentifier(n.expression) && isErrorClass(n.expression.text)) {
        const code = literal(n.arguments?.[0]);
        if (code !== undefined) add(n, code, "constructor");
      }
      if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.SuperKeyword && klass && isErrorClass(klass)) {
        const code = literal(n.arguments[0]);
        if (code !== undefined) add(n, code, "constructor");
      }
      if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === "isMystError")
        for (const a of n.arguments.slice(1)) {
          const code = literal(a);
          if (code !== undefined) add(a, code, "isMystError");
        }
      if (ts.isPropertyAssignment(n) && ts.isIdentifier(n.name) && n.name.text === "code") {
        const code = literal(n.initializer);
        if (code !== undefined) add(n, code, "field");
      }
      ts.forEachChild(n, (c) => visit(c, klass, inCodeType));
    };
    visit(sf);
  }
  return found;
}
