import { expect } from "chai";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..", "..");

/** A service type of the test's own, as its folder under node/services/ would hold it (no network, no root). */
const FIXTURE_TUNNEL = `import { Type } from "@sinclair/typebox";
import type { ConsumerService, ProviderService, Tunnel } from "../../session/service";
import { defineTunnel } from "../tunnel-type";

/** A service that answers each session with its greeting: the registry test's new type. */
export const loopback = defineTunnel({
  type: "loopback",
  network: false,
  settings: Type.Object(
    {
      greeting: Type.Optional(Type.String({ minLength: 1, description: "what the provider says to each consumer, default hello" })),
      repeat: Type.Optional(Type.Integer({ minimum: 1, maximum: 9, description: "how many times, default 1" })),
    },
    { additionalProperties: false },
  ),
  flags: { greeting: "--greeting <text>", repeat: "--repeat <n>" },
  check: (settings) => ({ greeting: "hello", repeat: 1, ...settings }),
  async startProvider(settings) {
    const open = new Set<string>();
    const provider: ProviderService = {
      type: "loopback",
      isRunning: () => true,
      openSession: async (session) => (open.add(session.id), { said: (settings.greeting ?? "hello").repeat(settings.repeat ?? 1) }),
      closeSession: async (id) => void open.delete(id),
    };
    return provider;
  },
  consumer: (): ConsumerService => ({
    type: "loopback",
    consumerData: async () => ({}),
    async connect(session): Promise<Tunnel> {
      return { dns: [], stop: async () => undefined, onDown: () => undefined, stats: () => ({ bytesIn: 0, bytesOut: 0 }), said: (session.serviceConfig as { said: string }).said } as Tunnel;
    },
  }),
});
`;

/** Run in the copy: what the CLI, the API document and the adapter suite make of the registry there. */
const PROBE = `import { openapiText } from "./scripts/openapi";
import { serviceBody } from "./node/cli/service";
import { TUNNEL_ADAPTERS } from "./test/support/tunnel-adapters";

async function main() {
  const doc = JSON.parse(await openapiText());
  const adapter = TUNNEL_ADAPTERS.find((a) => a.type === "loopback");
  const dir = require("node:fs").mkdtempSync(require("node:path").join(require("node:os").tmpdir(), "myst-registry-probe-"));
  const env = { dir, topology: { consumers: [undefined] }, net: { registry: {} }, consumerKeys: [{}] } as never;
  const provider = await adapter!.startProvider(env); // its settings: the type's defaults (greeting "hello", repeat 1)
  const config = await provider.openSession({ id: "s1", consumer: "c", consumerData: {} });
  const tunnel = await adapter!.consumerService(env, 0).connect({ id: "s1", provider: "p", serviceConfig: config });
  await provider.stop();
  console.log(JSON.stringify({
    startBody: doc.paths["/v1/services"].post.requestBody.content["application/json"].schema,
    connectBody: doc.paths["/v1/connection"].put.requestBody.content["application/json"].schema,
    adapters: TUNNEL_ADAPTERS.map((a) => ({ type: a.type, network: a.network })),
    cliBody: serviceBody("loopback", { greeting: "hi", repeat: "2", country: "DE", ipType: "unknown", bandwidth: "100" }),
    said: (tunnel as unknown as { said: string }).said,
  }));
}
main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
`;

/** Every file below `dir`, relative to it. */
function filesBelow(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => fs.statSync(path.join(dir, f)).isFile());
}

/**
 * A new tunnel type is one folder under node/services/ plus one line in node/services/registry.ts:
 * in a copy of the tree with exactly those two additions (and nothing else changed), the type is a
 * choice of `myst service start`, with its settings' flags; a body field and a type of the API's
 * document; and a member of the adapter suite, which starts and connects it.
 */
describe("the tunnel registry: a new type is one folder and one line", function () {
  this.timeout(240_000);
  let copy: string;

  before(function () {
    copy = fs.mkdtempSync(path.join(os.tmpdir(), "myst-registry-"));
    for (const part of ["node", "scripts", path.join("test", "support")]) fs.cpSync(path.join(ROOT, part), path.join(copy, part), { recursive: true });
    for (const file of ["package.json", "tsconfig.json"]) fs.copyFileSync(path.join(ROOT, file), path.join(copy, file));
    for (const link of ["node_modules", "typechain-types"]) fs.symlinkSync(path.join(ROOT, link), path.join(copy, link));
    // The two additions: the type's folder, and its line in the registry.
    fs.mkdirSync(path.join(copy, "node", "services", "loopback"));
    fs.writeFileSync(path.join(copy, "node", "services", "loopback", "tunnel.ts"), FIXTURE_TUNNEL);
    fs.appendFileSync(path.join(copy, "node", "services", "registry.ts"), 'export { loopback } from "./loopback/tunnel";\n');
  });

  after(function () {
    if (copy) fs.rmSync(copy, { recursive: true, force: true });
  });

  function inCopy(args: string[]): string {
    return execFileSync(process.execPath, ["-r", "ts-node/register/transpile-only", ...args], {
      cwd: copy,
      encoding: "utf8",
      env: { ...process.env, TS_NODE_PROJECT: path.join(copy, "tsconfig.json") },
    });
  }

  it("the copy differs from the tree only by the type's folder and one added line in the registry", function () {
    const changed = filesBelow(path.join(copy, "node")).filter((f) => {
      const original = path.join(ROOT, "node", f);
      return !fs.existsSync(original) || fs.readFileSync(original, "utf8") !== fs.readFileSync(path.join(copy, "node", f), "utf8");
    });
    expect(changed.sort()).to.deep.equal([path.join("services", "loopback", "tunnel.ts"), path.join("services", "registry.ts")]);
    const before = fs.readFileSync(path.join(ROOT, "node", "services", "registry.ts"), "utf8");
    expect(fs.readFileSync(path.join(copy, "node", "services", "registry.ts"), "utf8")).to.equal(`${before}export { loopback } from "./loopback/tunnel";\n`);
  });

  it("type-checks with the new type (the registry's and the adapter suite's types hold it)", function () {
    const tsconfig = {
      extends: "./tsconfig.json",
      include: ["node", "test/support/tunnel-adapters.ts"],
      compilerOptions: { noEmit: true, preserveSymlinks: true },
    };
    fs.writeFileSync(path.join(copy, "tsconfig.probe.json"), JSON.stringify(tsconfig));
    execFileSync(process.execPath, [require.resolve("typescript/bin/tsc", { paths: [ROOT] }), "-p", "tsconfig.probe.json"], { cwd: copy, stdio: "pipe" });
  });

  it("is a choice of `myst service start --help`, with its settings' flags and their descriptions", function () {
    const help = inCopy(["node/cli/main.ts", "service", "start", "--help"]);
    expect(help).to.match(/service type: openvpn \| wireguard \| proxy \|\s+noop \|\s+relay \|\s+loopback/);
    expect(help).to.match(/--greeting <text>\s+loopback: what the provider says to each\s+consumer, default hello/);
    expect(help).to.match(/--repeat <n>\s+loopback: how many times, default 1/);
  });

  it("is a type of the API's document (a start body with its settings, a connection's choice), the CLI builds its body, and the adapter suite starts and connects it", function () {
    const probeFile = path.join(copy, "probe.ts");
    fs.writeFileSync(probeFile, PROBE);
    const out = JSON.parse(inCopy([probeFile]));
    const types = (schema: { anyOf: { enum: string[] }[] }) => schema.anyOf.flatMap((t) => t.enum);
    expect(types(out.startBody.properties.type)).to.deep.equal(["openvpn", "wireguard", "proxy", "noop", "relay", "loopback"]);
    expect(out.startBody.properties.loopback.properties.greeting).to.include({
      type: "string",
      description: "what the provider says to each consumer, default hello",
    });
    expect(types(out.connectBody.properties.serviceType)).to.include("loopback");
    expect(out.cliBody).to.deep.include({ type: "loopback", loopback: { greeting: "hi", repeat: 2 } });
    expect(out.adapters).to.deep.include({ type: "loopback", network: false });
    expect(out.said).to.equal("hello");
  });
});

describe("`myst service start` flags from the registry", function () {
  // In-process: the CLI's body builder over the real registry.
  const { serviceBody } = require("../../../node/cli/service") as typeof import("../../../node/cli/service");
  const offer = { country: "DE", ipType: "unknown", bandwidth: "100" };
  const flagError = (type: string, flags: Record<string, unknown>) => {
    try {
      serviceBody(type, { ...offer, ...flags });
      return "accepted";
    } catch (err) {
      return `${(err as { code: string }).code}: ${(err as Error).message}`;
    }
  };

  it("puts each flag of the type under its setting, numbers and lists as its schema wants them", function () {
    expect(serviceBody("wireguard", { ...offer, publicIp: "198.18.3.2", port: "51821", allowPrivateRange: "10.1.0.0/16", device: "mwp1" })).to.deep.include({
      type: "wireguard",
      wireguard: { publicIp: "198.18.3.2", port: 51821, allowPrivateRanges: ["10.1.0.0/16"], device: "mwp1" },
    });
    expect(serviceBody("noop", offer)).to.not.have.any.keys("noop", "openvpn", "wireguard");
  });

  it("refuses another type's flag, a missing required one and a number that is not one, naming the flag", function () {
    expect(flagError("wireguard", { publicIp: "198.18.3.2", bind: "198.18.3.2" })).to.equal("BAD_FLAG: --bind is for openvpn, not wireguard");
    expect(flagError("noop", { netns: "x" })).to.equal("BAD_FLAG: --netns is for openvpn, wireguard, not noop");
    expect(flagError("openvpn", {})).to.match(/^BAD_FLAG: --public-ip is needed: the address consumers reach this provider at/);
    expect(flagError("openvpn", { publicIp: "198.18.3.2", port: "x" })).to.equal('BAD_FLAG: --port "x" is not a whole number');
    expect(flagError("teleport", {})).to.match(/^SERVICE_TYPE_UNKNOWN: unknown service type "teleport": one of openvpn, wireguard, proxy, noop/);
  });
});
