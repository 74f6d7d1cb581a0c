import { expect } from "chai";
import { spawnSync } from "node:child_process";
import path from "node:path";

const ROOT = path.resolve(__dirname, "../../..");

describe("the last-resort handler", function () {
  it("logs an unhandled rejection with its code and the process keeps running", function () {
    const script = `
      const { installLastResortHandler } = require("./node/log/last-resort");
      const { MystError } = require("./node/errors/MystError");
      installLastResortHandler();
      Promise.reject(new MystError("PEER_BROKE_IT", "a peer's message broke a handler"));
      Promise.reject(new RangeError("Maximum call stack size exceeded"));
      setTimeout(() => process.stdout.write("still serving"), 50);
    `;
    const run = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    expect(run.status).to.equal(0);
    expect(run.stdout).to.equal("still serving");
    const lines = run.stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.code)).to.deep.equal(["PEER_BROKE_IT", "UNHANDLED"]);
    expect(lines.every((l) => l.level === 50 && l.msg === "unexpected rejection; still serving")).to.equal(true);
  });
});
