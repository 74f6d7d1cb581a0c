// Writes the daemon's OpenAPI document to docs/openapi.json (the test suite checks it is current).
import fs from "node:fs";
import path from "node:path";
import { ApiServer } from "../node/api/server";
import { PACKAGE_ROOT } from "../node/config/config";

export const OPENAPI_FILE = path.join(__dirname, "..", "docs", "openapi.json");

export async function openapiText(): Promise<string> {
  return JSON.stringify(await ApiServer.document(require(path.join(PACKAGE_ROOT, "package.json")).version), null, 2) + "\n";
}

if (require.main === module) {
  openapiText().then((text) => {
    fs.writeFileSync(OPENAPI_FILE, text);
    console.log(`wrote ${path.relative(process.cwd(), OPENAPI_FILE)}`);
  });
}
