import path from "node:path";
import { fileURLToPath } from "node:url";
import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

const here = path.dirname(fileURLToPath(import.meta.url));

// The dashboard is served by the daemon from dist/ui (node/api/dashboard.ts): everything it needs
// is in that folder, nothing is fetched from elsewhere at run time.
export default defineConfig({
  root: here,
  base: "/",
  plugins: [preact()],
  build: { outDir: path.join(here, "..", "dist", "ui"), emptyOutDir: true, chunkSizeWarningLimit: 400 },
  logLevel: "warn",
});
