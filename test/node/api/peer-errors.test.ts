import { expect } from "chai";
import { ApiServer } from "../../../node/api/server";
import type { MystNode } from "../../../node/ops/node";
import { NodeMetrics } from "../../../node/daemon/metrics";
import { PeerError } from "../../../node/dialog/dialogs";
import { MystError, isMystError } from "../../../node/errors/MystError";
import { SessionRefusedError } from "../../../node/session/errors";
import { silentLogger } from "../../../node/log/logger";

describe("the REST API and a peer's error codes", function () {
  it("answers 502 PEER_ERROR, never 401, when a provider answers UNAUTHORIZED", async function () {
    // The node behind the API, as far as this route goes: connecting meets a provider's error.
    const metrics = new NodeMetrics();
    const node = {
      core: { identity: "0x0000000000000000000000000000000000000001", metrics },
      metrics,
      connection: {
        connect: async () => {
          throw new PeerError("UNAUTHORIZED", "0xProvider answered session.create with UNAUTHORIZED: go away");
        },
      },
    } as unknown as MystNode;
    const api = new ApiServer({ daemon: node, token: "t0ken", host: "127.0.0.1", port: 0, version: "test", log: silentLogger });
    await api.start();
    try {
      const res = await fetch(`${api.url}/v1/connection`, {
        method: "PUT",
        headers: { authorization: "Bearer t0ken", "content-type": "application/json" },
        body: JSON.stringify({ serviceType: "noop" }),
      });
      const body = (await res.json()) as { code: string; message: string };
      expect(res.status).to.equal(502);
      expect(body.code).to.equal("PEER_ERROR");
      expect(body.message).to.include("UNAUTHORIZED");
    } finally {
      await api.stop();
    }
  });
});

describe("typed error codes (the same file: errors a peer causes)", function () {
  it("isMystError narrows to the codes asked for, and a provider's refusal reason stays data", function () {
    const err: unknown = new SessionRefusedError("BAD_REQUEST", "the provider did not like it");
    expect(isMystError(err)).to.equal(true);
    expect(isMystError(err, "SESSION_REFUSED")).to.equal(true);
    expect(isMystError(err, "BAD_REQUEST")).to.equal(false);
    expect((err as SessionRefusedError).refusal).to.equal("BAD_REQUEST");
    expect(isMystError(new Error("plain"), "SESSION_REFUSED")).to.equal(false);
    expect(isMystError(new MystError("BAD_FLAG", "x"), "BAD_FLAG", "BAD_AMOUNT")).to.equal(true);
  });
});
