import { expect } from "chai";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { NodeClient, NodeClientError } from "../../../node/api/client";
import { DiscoveryClient, DiscoveryError } from "../../../node/discovery/client";
import { PeerError } from "../../../node/dialog/dialogs";
import { apiStatusOf, discoveryStatusOf, ERRORS, type ErrorCode, type ErrorEntry, isErrorCode } from "../../../node/errors/catalogue";
import { MystError } from "../../../node/errors/MystError";
import { createJsonApp } from "../../../node/http/app";
import { silentLogger } from "../../../node/log/logger";
import { REFUSAL_CODES } from "../../../node/session/messages";
import { API_DOC, withErrorsSection } from "../../../scripts/errors";
import { tempDir } from "../../../scripts/lib/tmp";
import { scanErrorCodes } from "../../support/error-code-scan";

const ROOT = path.join(__dirname, "..", "..", "..");
const CODES = Object.keys(ERRORS) as ErrorCode[];

describe("the error catalogue (node/errors/catalogue.ts)", function () {
  it("holds every code raised, checked, typed or answered anywhere in node/", function () {
    this.timeout(30_000);
    const found = scanErrorCodes(path.join(ROOT, "node"), ROOT);
    // The scan sees the codes it should (a sanity check on the scanner itself, not a count to keep).
    expect(found.filter((f) => f.how === "constructor").length).to.be.greaterThan(150);
    const unknown = found.filter((f) => !isErrorCode(f.code)).map((f) => `${f.file}:${f.line} ${f.code} (${f.how})`);
    expect(unknown, "codes missing from node/errors/catalogue.ts").to.deep.equal([]);
  });

  it("the scan finds a code thrown by any error class, however far from MystError", function () {
    const t = tempDir();
    try {
      fs.writeFileSync(
        path.join(t.dir, "a.ts"),
        [
          'import { MystError } from "./base";',
          "class WidgetError extends MystError {}",
          "class GadgetError extends WidgetError {",
          '  constructor() { super("GADGET_JAMMED", "jammed"); }',
          "}",
          'export const w = () => new WidgetError("WIDGET_BROKEN", "broken");',
          'export const ok = (e: unknown) => isMystError(e, "NO_SUCH_CODE");',
          'export const notAnError = () => new Map([["NOT_A_CODE", 1]]);',
        ].join("\n"),
      );
      const found = scanErrorCodes(t.dir).map((f) => `${f.code} ${f.how}`);
      expect(found).to.have.members(["GADGET_JAMMED constructor", "WIDGET_BROKEN constructor", "NO_SUCH_CODE isMystError"]);
    } finally {
      t.cleanup();
    }
  });

  it("lists no code that nothing in node/ mentions (a stale line)", function () {
    const files = (dir: string): string[] =>
      fs
        .readdirSync(dir, { withFileTypes: true })
        .flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));
    const catalogue = path.join(ROOT, "node", "errors", "catalogue.ts");
    const source = files(path.join(ROOT, "node"))
      .filter((f) => f !== catalogue)
      .map((f) => fs.readFileSync(f, "utf8"))
      .join("\n");
    expect(CODES.filter((c) => !source.includes(`"${c}"`))).to.deep.equal([]);
  });

  it("gives every code a module, a status and a one-line meaning", function () {
    for (const code of CODES) {
      const entry: ErrorEntry = ERRORS[code];
      expect(code, code).to.match(/^[A-Z][A-Z0-9_]{0,63}$/);
      expect(entry.status, code).to.be.within(400, 599);
      if (entry.discovery !== undefined) expect(entry.discovery, code).to.be.within(400, 599);
      expect(entry.meaning, code).to.match(/^[^\n]{10,200}$/);
      expect(fs.existsSync(path.join(ROOT, "node", entry.module)), `${code}: node/${entry.module}`).to.equal(true);
    }
  });

  it("marks exactly the session protocol's refusal codes as refusals", function () {
    expect(CODES.filter((c) => (ERRORS[c] as ErrorEntry).refusal)).to.have.members([...REFUSAL_CODES]);
  });

  it("is what the API answers: each code's status comes from the catalogue, anything else is 422", async function () {
    const app = await createJsonApp({ title: "t", version: "1", description: "t", bodyLimit: 1024, statusOf: apiStatusOf, log: silentLogger });
    app.get<{ Params: { code: string } }>("/raise/:code", async (req) => {
      throw new MystError(req.params.code as ErrorCode, "raised");
    });
    try {
      for (const code of CODES) {
        const res = await app.inject({ method: "GET", url: `/raise/${code}` });
        expect([res.statusCode, res.json().code], code).to.deep.equal([ERRORS[code].status, code]);
      }
      const discovery = CODES.filter((c) => discoveryStatusOf(c) !== undefined);
      expect(discovery).to.include.members(["NOT_READY", "PROPOSAL_STALE", "PROVIDER_LIMIT", "BAD_SIGNATURE"]);
    } finally {
      await app.close();
    }
  });

  it("is the error list in docs/api.md (npm run errors rewrites it)", function () {
    const doc = fs.readFileSync(API_DOC, "utf8");
    expect(withErrorsSection(doc) === doc, "docs/api.md's error list is stale: run npm run errors").to.equal(true);
    for (const code of CODES) expect(doc).to.include(`\`${code}\``);
  });

  describe("a peer's code never becomes one of ours", function () {
    it("is refused by the compiler where a code of ours is wanted", function () {
      const peer = new PeerError("UNAUTHORIZED", "the provider said so");
      // @ts-expect-error a peer's code is a string, not a key of the catalogue (tsc in test/guards.test.ts checks this line)
      const mixed = new MystError(peer.peerCode, "x");
      // @ts-expect-error a code that is not in the catalogue does not compile
      const invented = new MystError("NOT_IN_THE_CATALOGUE", "x");
      expect([peer.code, mixed.code, invented.code]).to.deep.equal(["PEER_ERROR", "UNAUTHORIZED", "NOT_IN_THE_CATALOGUE"]);
    });

    it("a discovery replica answering a code that is not discovery's is DISCOVERY_BAD_RESPONSE, its word kept in the message", async function () {
      const server = http.createServer((_req, res) => {
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ code: "UNAUTHORIZED", message: "who are you" }));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      try {
        const client = new DiscoveryClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, async () => null);
        const err = await client.search({}).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(DiscoveryError);
        expect((err as DiscoveryError).code).to.equal("DISCOVERY_BAD_RESPONSE");
        expect((err as DiscoveryError).message).to.include("UNAUTHORIZED: who are you");
      } finally {
        server.close();
      }
    });

    it("a discovery replica's own codes stay what they are (NOT_READY)", async function () {
      const server = http.createServer((_req, res) => {
        res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ code: "NOT_READY", message: "loading" }));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      try {
        const client = new DiscoveryClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, async () => null);
        const err = await client.search({}).catch((e: unknown) => e);
        expect((err as DiscoveryError).code).to.equal("NOT_READY");
      } finally {
        server.close();
      }
    });

    it("a node answering a code this client does not know is DAEMON_BAD_RESPONSE; a known one stays", async function () {
      const answering = (code: string) =>
        NodeClient.of({ url: "in-process:", pid: 1 } as never, "t".repeat(43), async () => ({ status: 409, text: JSON.stringify({ code, message: "m" }) }));
      const unknown = await answering("FROM_A_NEWER_NODE")
        .health()
        .catch((e: unknown) => e);
      expect(unknown).to.be.instanceOf(NodeClientError);
      expect([(unknown as NodeClientError).code, (unknown as NodeClientError).message]).to.deep.equal([
        "DAEMON_BAD_RESPONSE",
        "the node answered 409 FROM_A_NEWER_NODE: m",
      ]);
      const known = await answering("NODE_OFFLINE")
        .health()
        .catch((e: unknown) => e);
      expect((known as NodeClientError).code).to.equal("NODE_OFFLINE");
    });
  });
});
