import { expect } from "chai";
import fs from "node:fs";
import { openapiTo30, schemaTo30 } from "../../../node/http/openapi-30";
import { OPENAPI_FILE } from "../../../scripts/openapi";
import { openapiProblems } from "../../support/openapi-validator";

/** A one-route document whose answer has this schema. */
const documentWith = (schema: unknown) => ({
  openapi: "3.0.3",
  info: { title: "t", version: "1" },
  paths: { "/x": { get: { responses: { "200": { description: "ok", content: { "application/json": { schema } } } } } } },
});

describe("OpenAPI documents valid for the version they declare (3.0.3)", function () {
  this.timeout(30_000);

  it("docs/openapi.json passes an independent validator (@readme/openapi-parser)", async function () {
    const doc = JSON.parse(fs.readFileSync(OPENAPI_FILE, "utf8"));
    expect(doc.openapi).to.equal("3.0.3");
    expect(await openapiProblems(doc)).to.deep.equal([]);
  });

  describe("TypeBox's JSON Schema 2020-12 forms, which 3.0 refuses, are written in 3.0's", function () {
    const cases: [string, unknown, unknown][] = [
      ["a numeric exclusiveMinimum", { type: "number", exclusiveMinimum: 0 }, { type: "number", minimum: 0, exclusiveMinimum: true }],
      ["a numeric exclusiveMaximum", { type: "number", exclusiveMaximum: 5 }, { type: "number", maximum: 5, exclusiveMaximum: true }],
      ["const", { type: "string", const: "a" }, { type: "string", enum: ["a"] }],
      ["a type list with null", { type: ["string", "null"] }, { type: "string", nullable: true }],
      ["anyOf with a null type", { anyOf: [{ type: "string" }, { type: "null" }] }, { type: "string", nullable: true }],
      ["examples", { type: "string", examples: ["a", "b"] }, { type: "string", example: "a" }],
    ];
    for (const [what, from, to] of cases) {
      it(`${what}: refused as it is, accepted rewritten`, async function () {
        expect(await openapiProblems(documentWith(from))).to.have.length.greaterThan(0);
        const nested = { type: "object", properties: { field: from }, additionalProperties: false };
        expect(schemaTo30(nested)).to.deep.equal({ ...nested, properties: { field: to } });
        expect(await openapiProblems(openapiTo30(documentWith(nested)))).to.deep.equal([]);
      });
    }

    it("keeps a plain minimum that is stricter than the exclusive one, and leaves its input alone", function () {
      const schema = { type: "number", minimum: 3, exclusiveMinimum: 1 };
      expect(schemaTo30(schema)).to.deep.equal({ type: "number", minimum: 3 });
      expect(schema).to.deep.equal({ type: "number", minimum: 3, exclusiveMinimum: 1 });
    });
  });
});
