import { expect } from "chai";
import fs from "node:fs";
import { Type } from "@sinclair/typebox";
import { typeOf, UI_TYPES_FILE, uiTypesText } from "../../../scripts/ui-types";

describe("the dashboard's types come from the API's schemas", function () {
  it("ui/src/api-types.ts is what the schemas generate now (npm run ui-types)", function () {
    expect(fs.readFileSync(UI_TYPES_FILE, "utf8")).to.equal(uiTypesText(), "ui/src/api-types.ts is stale: run npm run ui-types");
  });

  it("writes optional fields, unions, literals and arrays as the schema says", function () {
    const schema = Type.Object({
      state: Type.Union([Type.Literal("on"), Type.Literal("off")]),
      count: Type.Optional(Type.Integer()),
      tags: Type.Array(Type.String()),
      either: Type.Union([Type.String(), Type.Null()]),
    });
    expect(typeOf(schema).replace(/\s+/g, " ")).to.equal('{ state: "on" | "off"; count?: number; tags: string[]; either: string | null; }');
  });

  it("names a schema it cannot write instead of guessing", function () {
    expect(() => typeOf(Type.Unsafe<bigint>({ type: "bigint" }))).to.throw(/no TypeScript type/);
  });
});
