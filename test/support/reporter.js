// Mocha's spec reporter, plus the final line CI reads: "N passed, N failed[, N skipped]".
const Mocha = require("mocha");
const { Spec } = Mocha.reporters;
const { EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL } = Mocha.Runner.constants;

class MystReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    // Seconds of test time per file (hooks excluded): which files set the suite's length.
    const perFile = new Map();
    const count = (test) => {
      const file = test.file ? require("node:path").relative(process.cwd(), test.file) : "?";
      perFile.set(file, (perFile.get(file) ?? 0) + (test.duration ?? 0) / 1000);
    };
    runner.on(EVENT_TEST_PASS, count);
    runner.on(EVENT_TEST_FAIL, count);
    runner.once(EVENT_RUN_END, () => {
      if (perFile.size > 1) {
        const top = [...perFile].sort((a, b) => b[1] - a[1]).slice(0, 8);
        process.stdout.write(`\nlongest files (s of test time): ${top.map(([f, s]) => `${f} ${s.toFixed(0)}`).join(", ")}\n`);
      }
      const { passes, failures, pending } = runner.stats;
      const skipped = pending > 0 ? `, ${pending} skipped` : "";
      process.stdout.write(`\n${passes} passed, ${failures} failed${skipped}\n`);
    });
  }
}

module.exports = MystReporter;
