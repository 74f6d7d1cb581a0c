import { validate } from "@readme/openapi-parser";

/**
 * What an independent validator (@readme/openapi-parser, the one ReadMe and many client generators
 * build on) finds wrong with an OpenAPI document, checked against the version the document
 * declares; empty when it is valid.
 */
export async function openapiProblems(doc: unknown): Promise<string[]> {
  // The parser resolves references in place: give it a copy.
  const result = await validate(structuredClone(doc) as Parameters<typeof validate>[0]);
  if (result.valid) return [];
  return result.errors.map((e) => e.message);
}
