import { expect } from "chai";
import { Type } from "@sinclair/typebox";
import { Registry } from "prom-client";
import { ApiServer } from "../../../node/api/server";
import { buildDiscoveryApp } from "../../../node/discovery/http-api";
import { ProposalIndex } from "../../../node/discovery/index";
import { compileAllSchemas, createJsonApp, type JsonApp } from "../../../node/http/app";
import { silentLogger } from "../../../node/log/logger";

describe("route schemas compiled at a route's first request, not at start", function () {
  this.timeout(30_000);

  /** Two routes, each with a body schema and an answer schema. */
  async function twoRoutes(): Promise<JsonApp> {
    const app = await createJsonApp({ title: "t", version: "1", description: "d", bodyLimit: 1024, statusOf: () => undefined, log: silentLogger });
    for (const name of ["a", "b"])
      app.post(
        `/${name}`,
        {
          schema: {
            body: Type.Object({ n: Type.Integer({ minimum: 1 }), tags: Type.Optional(Type.Array(Type.String())) }, { additionalProperties: false }),
            querystring: Type.Object({ k: Type.Optional(Type.Array(Type.String())) }, { additionalProperties: false }),
            response: { 200: Type.Object({ n: Type.Integer(), k: Type.Array(Type.String()) }) },
          },
        },
        async (req) => ({ n: req.body.n, k: req.query.k ?? [], secret: "not in the answer's schema" }),
      );
    await app.ready();
    return app;
  }

  it("leaves a route's schemas uncompiled until it is asked, then answers exactly as before", async () => {
    const app = await twoRoutes();
    try {
      const ok = await app.inject({ method: "POST", url: "/a?k=x", payload: { n: 2 } });
      // A single query value is coerced to the array its schema wants; the answer's schema drops the extra field.
      expect(ok.statusCode, ok.body).to.equal(200);
      expect(ok.json()).to.deep.equal({ n: 2, k: ["x"] });
      const bad = await app.inject({ method: "POST", url: "/a", payload: { n: 0 } });
      expect(bad.statusCode).to.equal(400);
      expect(bad.json()).to.deep.equal({ code: "BAD_REQUEST", message: "body.n must be >= 1" });
      const unknown = await app.inject({ method: "POST", url: "/a", payload: { n: 1, extra: true } });
      expect(unknown.json()).to.deep.equal({ code: "BAD_REQUEST", message: 'unknown field "extra"' });
      // Route a's are made; route b's body, query and answer schemas still wait.
      expect(compileAllSchemas(app)).to.equal(3);
      expect(compileAllSchemas(app)).to.equal(0);
      const b = await app.inject({ method: "POST", url: "/b?k=y&k=z", payload: { n: 5 } });
      expect(b.json()).to.deep.equal({ n: 5, k: ["y", "z"] });
    } finally {
      await app.close();
    }
  });

  it("compiles every schema of the daemon's API and of discovery's without an error", async () => {
    expect(await ApiServer.compileSchemas("test")).to.be.greaterThan(40);
    const discovery = await buildDiscoveryApp(
      {
        ready: true,
        index: new ProposalIndex(3_600_000),
        quality: undefined as never,
        postReceipt: async () => undefined as never,
        postProbe: async () => undefined as never,
        metrics: new Registry(),
        post: async () => "refreshed",
        health: () => ({ broker: "connected", store: "ok" }),
        queryTimer: () => () => undefined,
      },
      { log: silentLogger },
    );
    try {
      await discovery.ready();
      expect(compileAllSchemas(discovery as unknown as JsonApp)).to.be.greaterThan(5);
    } finally {
      await discovery.close();
    }
  });

  it("refuses a header schema when the route is registered (Fastify would not lower-case its keys under a compiler of ours)", async () => {
    const app = await createJsonApp({ title: "t", version: "1", description: "d", bodyLimit: 1024, statusOf: () => undefined, log: silentLogger });
    app.get("/h", { schema: { headers: Type.Object({ "X-Token": Type.String() }) } }, async () => ({}));
    let err: Error | undefined;
    try {
      await app.ready();
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/header schema/);
    await Promise.resolve(app.close()).catch(() => undefined);
  });
});
