/**
 * The OpenAPI documents say `openapi: 3.0.3`, the version client generators know best, but TypeBox
 * writes JSON Schema 2020-12, which OpenAPI 3.0's schema objects are not: a numeric
 * `exclusiveMinimum`, `const`, `type: "null"`, `examples`. This rewrites those into their 3.0 forms
 * (`minimum` + a boolean `exclusiveMinimum`, a one-value `enum`, `nullable`, `example`), so the
 * served document and docs/openapi.json are valid for the version they declare. Only the document
 * changes: requests are still checked against the TypeBox schemas by Ajv, which reads 2020-12.
 */

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** One schema object (and everything under it) in OpenAPI 3.0's dialect; a new object, the input is left alone. */
export function schemaTo30(input: unknown): unknown {
  if (!isObject(input)) return input;
  const s: Json = { ...input };
  for (const key of ["items", "additionalProperties", "not"]) if (isObject(s[key])) s[key] = schemaTo30(s[key]);
  if (isObject(s.properties)) s.properties = Object.fromEntries(Object.entries(s.properties).map(([k, v]) => [k, schemaTo30(v)]));
  for (const key of ["allOf", "oneOf"]) if (Array.isArray(s[key])) s[key] = (s[key] as unknown[]).map(schemaTo30);
  bound(s, "exclusiveMinimum", "minimum", (a, b) => a > b);
  bound(s, "exclusiveMaximum", "maximum", (a, b) => a < b);
  if ("const" in s) {
    s.enum = [s.const];
    delete s.const;
  }
  if (Array.isArray(s.examples)) {
    if (s.examples.length > 0 && !("example" in s)) s.example = s.examples[0];
    delete s.examples;
  }
  if (Array.isArray(s.type)) {
    const types = (s.type as string[]).filter((t) => t !== "null");
    if (types.length < s.type.length) s.nullable = true;
    if (types.length === 1) s.type = types[0];
    else {
      // Several types: 3.0 has no type list, only a choice of schemas.
      delete s.type;
      s.anyOf = types.map((type) => ({ type }));
    }
  }
  if (Array.isArray(s.anyOf)) {
    const choices = (s.anyOf as unknown[]).map(schemaTo30);
    const others = choices.filter((c) => !(isObject(c) && c.type === "null" && Object.keys(c).length === 1));
    if (others.length < choices.length) {
      s.nullable = true;
      if (others.length === 1 && isObject(others[0]) && !("$ref" in others[0])) {
        delete s.anyOf;
        return { ...others[0], ...s };
      }
    }
    s.anyOf = others;
  }
  return s;
}

/** A 2020-12 numeric exclusive bound as 3.0's `minimum`/`maximum` with a boolean flag (or the plain bound when that is stricter). */
function bound(s: Json, exclusive: string, inclusive: string, stricter: (a: number, b: number) => boolean): void {
  const e = s[exclusive];
  if (typeof e !== "number") return;
  const i = s[inclusive];
  if (typeof i === "number" && stricter(i, e)) delete s[exclusive];
  else {
    s[inclusive] = e;
    s[exclusive] = true;
  }
}

const mapValues = (o: unknown, f: (v: unknown) => unknown): unknown => (isObject(o) ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)])) : o);

/** A media-type map (`content`): each entry's schema in 3.0's dialect. */
const content = (c: unknown) => mapValues(c, (m) => (isObject(m) ? { ...m, schema: schemaTo30(m.schema) } : m));
const withSchema = (p: unknown): unknown =>
  isObject(p) ? { ...p, ...(p.schema ? { schema: schemaTo30(p.schema) } : {}), ...(p.content ? { content: content(p.content) } : {}) } : p;

function operationTo30(op: unknown): unknown {
  if (!isObject(op)) return op;
  const o: Json = { ...op };
  if (Array.isArray(o.parameters)) o.parameters = o.parameters.map(withSchema);
  if (isObject(o.requestBody)) o.requestBody = withSchema(o.requestBody);
  if (isObject(o.responses))
    o.responses = mapValues(o.responses, (r) =>
      isObject(r) ? { ...(withSchema(r) as Json), ...(r.headers ? { headers: mapValues(r.headers, withSchema) } : {}) } : r,
    );
  return o;
}

/** A whole OpenAPI 3.0 document with every schema in 3.0's dialect (paths and components). */
export function openapiTo30<T>(doc: T): T {
  if (!isObject(doc)) return doc;
  const d: Json = { ...doc };
  if (isObject(d.paths))
    d.paths = mapValues(d.paths, (item) =>
      isObject(item)
        ? { ...(mapValues(item, operationTo30) as Json), ...(Array.isArray(item.parameters) ? { parameters: item.parameters.map(withSchema) } : {}) }
        : item,
    );
  if (isObject(d.components)) {
    const c: Json = { ...d.components };
    if (c.schemas) c.schemas = mapValues(c.schemas, schemaTo30);
    if (c.parameters) c.parameters = mapValues(c.parameters, withSchema);
    if (c.requestBodies) c.requestBodies = mapValues(c.requestBodies, withSchema);
    if (c.responses) c.responses = mapValues(c.responses, withSchema);
    d.components = c;
  }
  return d as T;
}
