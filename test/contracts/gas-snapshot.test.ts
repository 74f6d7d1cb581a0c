import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import hre from "hardhat";
import { measureGas } from "../../scripts/lib/gas";

/** An operation may cost at most this much more than bench/gas.json says before the file must be updated. */
const TOLERANCE = 0.01;

describe("gas snapshot: bench/gas.json stays true", function () {
  it("measures every operation within 1% of bench/gas.json (run `npm run gas` after a deliberate change)", async function () {
    // Under `hardhat coverage` every statement is instrumented and costs more: the figures mean nothing there.
    if ((hre as unknown as { __SOLIDITY_COVERAGE_RUNNING?: boolean }).__SOLIDITY_COVERAGE_RUNNING) this.skip();
    const committed = JSON.parse(fs.readFileSync(path.join(hre.config.paths.root, "bench", "gas.json"), "utf8")).gasUsed as Record<string, number>;
    const { rows } = await measureGas(hre);
    expect(Object.keys(rows).sort(), "the operations measured and the operations in bench/gas.json").to.deep.equal(Object.keys(committed).sort());
    const grown = Object.entries(rows)
      .filter(([op, gas]) => gas > committed[op] * (1 + TOLERANCE))
      .map(([op, gas]) => `${op}: ${committed[op]} → ${gas} (+${(((gas - committed[op]) / committed[op]) * 100).toFixed(2)}%)`);
    expect(grown, "operations that grew past bench/gas.json by more than 1%").to.deep.equal([]);
  });
});
