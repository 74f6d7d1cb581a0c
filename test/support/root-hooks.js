// Mocha root hooks, loaded in every test process (hardhat.config.ts: mocha.require).

/** `value` as JSON can carry it: bigints (wei amounts) as "123n", anything else unserializable as text. */
function serializable(value) {
  try {
    JSON.stringify(value);
    return value;
  } catch {
    try {
      return JSON.parse(JSON.stringify(value, (_key, x) => (typeof x === "bigint" ? `${x}n` : x)));
    } catch {
      return String(value);
    }
  }
}

exports.mochaHooks = {
  // A parallel run sends each file's results from its worker to the main process as JSON: a failed
  // assertion about bigints would not serialize, and the file's results would be lost with it.
  afterEach() {
    const err = this.currentTest && this.currentTest.err;
    if (!err || typeof err !== "object") return;
    for (const key of ["actual", "expected"]) if (key in err) err[key] = serializable(err[key]);
    // Any other field of the error (a `cause` holding bigints, a circular object) would crash the
    // worker while it sends the results ("Worker terminated Unexpectedly", the failure unnamed).
    for (const key of Object.keys(err)) if (key !== "actual" && key !== "expected") err[key] = serializable(err[key]);
    if (err.cause !== undefined) err.cause = serializable(err.cause instanceof Error ? { message: err.cause.message, code: err.cause.code } : err.cause);
  },
};
