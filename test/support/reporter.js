// Mocha's spec reporter, plus the final line CI reads: "N passed, N failed[, N skipped]".
const Mocha = require("mocha");
const { Spec } = Mocha.reporters;
const { EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_HOOK_END } = Mocha.Runner.constants;

class MystReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    // Seconds per file, its tests' and its hooks' (a file's before/after set up chains, brokers and
    // topologies): which files set the suite's length. A root hook (no file) is not counted.
    const perFile = new Map();
    const count = (runnable) => {
      if (!runnable.file) return;
      const file = require("node:path").relative(process.cwd(), runnable.file);
      perFile.set(file, (perFile.get(file) ?? 0) + (runnable.duration ?? 0) / 1000);
    };
    runner.on(EVENT_TEST_PASS, count);
    runner.on(EVENT_TEST_FAIL, count);
    runner.on(EVENT_HOOK_END, count);
    runner.once(EVENT_RUN_END, () => {
      if (perFile.size > 1) {
        const top = [...perFile].sort((a, b) => b[1] - a[1]).slice(0, 12);
        const total = [...perFile.values()].reduce((a, b) => a + b, 0);
        process.stdout.write(`\nlongest files (s of test and hook time): ${top.map(([f, s]) => `${f} ${s.toFixed(0)}`).join(", ")}\n`);
        // The sum over all files is the work the parallel workers share: with J jobs the suite cannot take less than sum / J.
        process.stdout.write(`all ${perFile.size} files: ${total.toFixed(0)} s of test and hook time\n`);
      }
      const { passes, failures, pending } = runner.stats;
      const skipped = pending > 0 ? `, ${pending} skipped` : "";
      process.stdout.write(`\n${passes} passed, ${failures} failed${skipped}\n`);
    });
  }
}

module.exports = MystReporter;
