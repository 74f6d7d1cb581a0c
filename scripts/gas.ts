import fs from "node:fs";
import path from "node:path";
import hre from "hardhat";
import { BATCH, calldataGas, measureGas } from "./lib/gas";

/**
 * The gas table: gasUsed of each operation a node pays for, on a fresh in-process chain.
 * Writes bench/gas.json and docs/gas.md. Run: npm run gas
 */
// Mysterium's contracts (solc 0.8.9, optimizer 200), as given in the issue, and our targets.
const REFERENCE: Record<string, { mysterium?: number; target?: number }> = {
  "register (relayed)": { mysterium: 296_455, target: 100_000 },
  "deposit (first)": { mysterium: 51_600 },
  "deposit (later)": { target: 45_000 },
  "settle (first)": { mysterium: 133_847, target: 75_000 },
  "settle (later)": { mysterium: 88_533, target: 50_000 },
  [`settle batch of ${BATCH} (later), per promise`]: { mysterium: 88_533, target: 15_000 },
};

interface StructLog {
  op: string;
  gas: number;
  gasCost: number;
  depth: number;
  stack?: string[];
}

/**
 * Where a transaction's gas goes, from its opcode trace: the intrinsic cost (21,000 and the
 * calldata), each external call by callee (all gas its frame used), and the top frame's own
 * opcodes grouped by kind.
 */
async function gasBreakdown(hash: string, gasUsed: number, callees: Record<string, string>, inside: string[] = []): Promise<Record<string, number>> {
  const trace = (await hre.network.provider.send("debug_traceTransaction", [hash, { disableMemory: true, disableStorage: true }])) as {
    structLogs: StructLog[];
  };
  const logs = trace.structLogs;
  const parts: Record<string, number> = {};
  const add = (k: string, n: number) => (parts[k] = (parts[k] ?? 0) + n);
  let executed = 0;
  for (let i = 0; i < logs.length; i++) {
    const step = logs[i];
    if (step.depth !== 1) continue;
    if (["CALL", "STATICCALL", "DELEGATECALL"].includes(step.op)) {
      let j = i + 1;
      while (j < logs.length && logs[j].depth !== 1) j++;
      const cost = step.gas - (j < logs.length ? logs[j].gas : 0);
      const stack = step.stack ?? [];
      const to =
        "0x" +
        BigInt("0x" + stack[stack.length - 2].replace(/^0x/, ""))
          .toString(16)
          .padStart(40, "0");
      const callee = callees[to] ?? `call ${to}`;
      if (inside.includes(callee)) {
        // The callee's own opcodes by kind (its frame makes no call of its own), and the call itself.
        let own = 0;
        for (let k = i + 1; k < j; k++) {
          add(`${callee}: ${kindOf(logs[k].op)}`, logs[k].gasCost);
          own += logs[k].gasCost;
        }
        add(`${callee}: the CALL (warm account)`, cost - own);
      } else add(callee, cost);
      executed += cost;
      continue;
    }
    add(kindOf(step.op), step.gasCost);
    executed += step.gasCost;
  }
  return { "intrinsic (21,000 + calldata)": gasUsed - executed, ...parts };
}

function kindOf(op: string): string {
  return /^(SLOAD|SSTORE|TLOAD|TSTORE|KECCAK256|EXTCODESIZE)$/.test(op) ? op : op.startsWith("LOG") ? "events (LOG)" : "other opcodes";
}

/** What each kind of gas above a floor is, in this contract. */
const ABOVE_FLOOR: Record<string, string> = {
  "other opcodes": "code: dispatch, calldata decoding, the checks, the MSTOREs the hashing needs, the jumps",
  SSTORE: "slot writes the floor does not count",
  SLOAD: "slot reads the floor does not count (warm re-reads, 100 each)",
  KECCAK256:
    "hashing the floor does not count: a pair's key is two hashes (the provider's map, then the consumer in it) where the first settle's floor counts one; in a batch, the map's and the earnings slot's keys, once a call",
  TLOAD: "the re-entrancy guard's check (transient storage): settle and settleBatch read it and do not set it, calling no contract",
  TSTORE: "the re-entrancy guard (transient storage)",
};

/** The rows of `measured` above what `floor` counts for each kind, with what they are. */
function aboveFloor(measured: Record<string, number>, floor: Record<string, number>): string[] {
  const rows = Object.entries(measured)
    .map(([kind, gas]) => [kind, Math.round(gas - (floor[kind] ?? 0))] as const)
    .filter(([, gas]) => gas !== 0)
    .sort(([, a], [, b]) => b - a);
  const total = rows.reduce((n, [, gas]) => n + gas, 0);
  return [
    "| kind | above the floor | what it is |",
    "|---|---:|---|",
    ...rows.map(([kind, gas]) => `| ${kind} | ${gas.toLocaleString("en-US")} | ${ABOVE_FLOOR[kind] ?? ""} |`),
    `| **total** | **${total.toLocaleString("en-US")}** | |`,
  ];
}

/** A floor: the parts no implementation of the same behaviour can do without, each with its reason. */
type Floor = [part: string, gas: number][];

async function main() {
  const { rows, laterSettle, laterBatch, firstSettle, laterDeposit, addresses } = await measureGas(hre);
  const callees = {
    [addresses.registry.toLowerCase()]: "registry.beneficiaryOf",
    [addresses.token.toLowerCase()]: "token.transfer",
    [addresses.vault.toLowerCase()]: "vault.onTransferReceived",
    "0x0000000000000000000000000000000000000001": "ecrecover",
  };
  const breakdown = await gasBreakdown(laterSettle.hash, rows["settle (later)"], callees);
  const firstBreakdown = await gasBreakdown(firstSettle.hash, rows["settle (first)"], callees);
  const batchTotal = await gasBreakdown(laterBatch.hash, rows[`settle batch of ${BATCH} (later)`], callees);
  const batchBreakdown = Object.fromEntries(Object.entries(batchTotal).map(([k, v]) => [k, Math.round(v / BATCH)]));
  const depositBreakdown = await gasBreakdown(laterDeposit.hash, rows["deposit (later)"], callees, ["vault.onTransferReceived"]);

  const fmtGas = (n = 0) => n.toLocaleString("en-US");
  const perPromise = rows[`settle batch of ${BATCH} (later), per promise`];
  const batchData = calldataGas(laterBatch.data);
  const depositData = calldataGas(laterDeposit.data);
  const firstData = calldataGas(firstSettle.data);
  // Per promise in a later batch: what a signature checked on chain and two cold slots changed cost.
  const promiseFloor: Floor = [
    [`the transaction's 21,000, shared by ${BATCH}`, 21_000 / BATCH],
    [
      `calldata: 96 packed bytes (consumer 20, amount 12, r 32, yParity‖s 32) at 16 a non-zero byte, 4 a zero one; this batch: ${fmtGas(batchData.gas)} ÷ ${BATCH}`,
      Math.round(batchData.gas / BATCH),
    ],
    ["ecrecover: the precompile's 3,000 and a warm STATICCALL", 3_100],
    ["the pair's settled figure: cold SLOAD 2,100 + SSTORE 2,900 (its replay protection)", 5_000],
    ["the consumer's vault: cold SLOAD 2,100 + SSTORE 2,900 (the one balance all providers draw on)", 5_000],
    ["PromiseSettled: LOG 375 + 3 topics × 375 + 64 bytes × 8", 2_012],
    ["KECCAK256: the struct hash (128 bytes) 54, the digest (66 bytes) 48, two mapping slots 2 × 42", 186],
    [`the provider's earnings, once a call: cold SLOAD 2,100 + SSTORE 2,900, shared by ${BATCH}`, 5_000 / BATCH],
  ];
  const firstFloor: Floor = [
    ["the transaction", 21_000],
    [`calldata (${firstData.nonZero} non-zero, ${firstData.zero} zero bytes)`, firstData.gas],
    ["the pair's settled figure, zero → non-zero: cold SLOAD 2,100 + SSTORE 20,000", 22_100],
    ["the provider's earnings, zero → non-zero: cold SLOAD 2,100 + SSTORE 20,000", 22_100],
    ["the consumer's vault: cold SLOAD 2,100 + SSTORE 2,900", 5_000],
    ["ecrecover", 3_100],
    ["PromiseSettled", 2_012],
    ["KECCAK256: the struct hash 54, the digest 48, the keys of the vault's and the earnings' slots 2 × 42, the pair's (consumer, provider) 48", 234],
  ];
  const depositFloor: Floor = [
    ["the transaction", 21_000],
    [`calldata: transferAndCall(vault, value), ${depositData.nonZero} non-zero and ${depositData.zero} zero bytes`, depositData.gas],
    ["the token: the sender's balance, cold SLOAD 2,100 + SSTORE 2,900", 5_000],
    ["the token: the vault's balance, the same", 5_000],
    ["the token: Transfer (LOG 375 + 3 topics × 375 + 32 bytes × 8)", 1_756],
    ["the first touch of the vault's account (EIP-2929) and the call to it", 2_700],
    ["the vault: the consumer's slot, cold SLOAD 2,100 + SSTORE 2,900", 5_000],
    ["the vault: Deposited (LOG 375 + 2 topics × 375 + 2 words × 256)", 1_637],
  ];
  const sum = (floor: Floor) => Math.round(floor.reduce((n, [, g]) => n + g, 0));
  const floorTable = (floor: Floor, measured: number) => [
    "| part | gas |",
    "|---|---:|",
    ...floor.map(([part, gas]) => `| ${part} | ${fmtGas(Math.round(gas))} |`),
    `| **floor** | **${fmtGas(sum(floor))}** |`,
    `| measured | ${fmtGas(measured)} (${fmtGas(measured - sum(floor))} above the floor) |`,
  ];

  const root = hre.config.paths.root;
  const compiler = hre.config.solidity.compilers[0];
  const json = {
    compiler: { version: compiler.version, optimizer: compiler.settings.optimizer, evmVersion: compiler.settings.evmVersion },
    gasUsed: rows,
    reference: REFERENCE,
    settleLaterBreakdown: breakdown,
    batchPerPromiseBreakdown: batchBreakdown,
    depositLaterBreakdown: depositBreakdown,
    floors: {
      batchPerPromise: sum(promiseFloor),
      settleFirst: sum(firstFloor),
      depositLater: sum(depositFloor),
    },
  };
  fs.mkdirSync(path.join(root, "bench"), { recursive: true });
  fs.writeFileSync(path.join(root, "bench", "gas.json"), JSON.stringify(json, null, 2) + "\n");

  const table = (parts: Record<string, number>) => [
    "| part | gas |",
    "|---|---:|",
    ...Object.entries(parts)
      .sort(([, a], [, b]) => b - a)
      .map(([part, gas]) => `| ${part} | ${fmtGas(gas)} |`),
  ];
  const unreachable = 21_000 / BATCH + 64 * 16 + 3_100 + 10_000;
  // The code above the deposit's floor: each frame's opcodes that are not its slots, events or account access.
  const tokenCode = (depositBreakdown["other opcodes"] ?? 0) + (depositBreakdown.KECCAK256 ?? 0);
  const vaultCode = (depositBreakdown["vault.onTransferReceived: other opcodes"] ?? 0) + (depositBreakdown["vault.onTransferReceived: KECCAK256"] ?? 0);
  const lines = [
    "# Gas",
    "",
    "Generated by `npm run gas` (scripts/gas.ts) on a fresh in-process Hardhat chain; do not edit by hand.",
    `Compiler: solc ${compiler.version}, optimizer runs ${compiler.settings.optimizer?.runs}, EVM ${compiler.settings.evmVersion}; ` +
      "MystToken through the IR pipeline (`viaIR`, hardhat.config.ts), the other contracts through the legacy one.",
    '"first" writes slots that were zero (a pair never settled, a provider with no earnings, a vault never funded);',
    '"later" is the steady state, where they hold a value; "new pair" is a provider\'s new consumer (its earnings slot holds a value).',
    "Settlements credit the provider inside the vault (no token moves); `withdraw earnings` pays them out, once for many settlements.",
    "The Mysterium column is Hermes (settle first / later), and its later settle is the fair comparison for one promise in a batch",
    "too: Hermes settles one promise per transaction. A deposit is one token call (`transferAndCall`, ERC-1363: the token notifies",
    "the vault), which is what the node sends; the two plain ERC-20 ways in are measured too (an exact approval, its own transaction",
    "not counted, spent to zero; a permit). Promises reach the vault packed, 96 bytes each (consumer ‖ uint96 amount ‖ r ‖ yParity‖s,",
    "EIP-2098), and a batch's common promises are settled by one assembly loop (`_settleRun`); every other one (an error, a skip,",
    "an overdraft) by the plain Solidity path (`_settleUncommon`). Before that (issue 31's measurement): 20,902 a batched promise,",
    "81,319 the first settle, 47,119 a later settle, 52,330 a later deposit by approval and 81,055 by permit (the node's deposit then);",
    "before issue 31's second pass: 46,757 the node's later deposit (`transferAndCall`); before its third pass: 45,421. Before its fourth",
    "(2026-12-07, the floor sections say what changed): 18,758 a batched promise, 80,374 the first settle, 46,174 a later settle, 430,263",
    "a later relayed batch of 20, 62,809 a payout of earnings; the floors then left out hashing in the first settle and the earnings slot's",
    "share in a batch: counted now (+234, which any EIP-712 check pays, and +250, which this design pays: one earnings slot a provider,",
    'read and written once a call, 5,000 over the batch\'s size), so "above the floor" fell by more than the gas did.',
    "",
    "| operation | gasUsed | Mysterium | aim |",
    "|---|---:|---:|---:|",
    ...Object.entries(rows).map(([op, gas]) => {
      const ref = REFERENCE[op] ?? {};
      const fmt = (n?: number) => (n === undefined ? "" : fmtGas(n));
      const mark = ref.target !== undefined ? (gas <= ref.target ? " ✓" : " ✗") : "";
      return `| ${op} | ${fmt(gas)} | ${fmt(ref.mysterium)} | ${fmt(ref.target)}${mark} |`;
    }),
    "",
    `## One promise in a batch of ${BATCH}: the floor`,
    "",
    `A later batch costs ${fmtGas(perPromise)} gas a promise against an aim of 15,000. What one promise cannot do without, line by line:`,
    "",
    ...floorTable(promiseFloor, perPromise),
    "",
    "Above the floor, measured (the batch's opcode trace by kind, less the floor's share of each kind, a promise):",
    "",
    ...aboveFloor(batchBreakdown, {
      "intrinsic (21,000 + calldata)": 21_000 / BATCH + batchData.gas / BATCH,
      SSTORE: 5_800 + 2_900 / BATCH,
      SLOAD: 4_200 + 2_100 / BATCH,
      ecrecover: 3_100,
      "events (LOG)": 2_012,
      KECCAK256: 186,
    }),
    "",
    `The aim is below this floor. The transaction's share, the signature's 64 bytes, ecrecover and the two slots alone are ` +
      `${fmtGas(unreachable)} gas, before the amount, the consumer's address, the digest and any event: no contract that checks ` +
      "one signature a promise on chain and keeps a cumulative figure per pair against one shared balance can settle a promise for 15,000. " +
      "What is above the floor is in the table above: code (the loop's MSTOREs for the hashing, its checks and jumps, and the call's " +
      "dispatch, decoding, domain separator and earnings' arithmetic shared by its promises) and the re-entrancy guard's check. " +
      "No change of layout takes a promise under the aim: the two slots a promise changes are the consumer's vault (shared by every " +
      "provider, so it cannot be folded into the pair) and the pair's settled figure (per pair, so it cannot be folded into the vault), " +
      "and nothing else is read per promise that could share a slot with either.",
    "",
    "Issue 31's fourth pass took a later batch from 18,758 to " +
      `${fmtGas(perPromise)} a promise and the first settle from 80,374 to ${fmtGas(rows["settle (first)"])} (ablations on the same chain, ` +
      "a promise in a batch / the first settle):",
    "",
    "- *The guard checked, not set*: `settle` and `settleBatch` call no contract on any path (their one call is to the ecrecover " +
      'precompile, which runs no code: the review test "hands control to no contract" traces every path, paying and reverting, and ' +
      "fails if one calls anything else), so nothing can re-enter them. They still refuse to run while a `nonReentrant` function holds " +
      "control (`ReentrancyGuardReentrantCall`, as before: the hostile-token test), but no longer set the guard: two TSTOREs. −18 / −358.",
    "- *The earnings credited with one read*: `+=` on the packed slot read it twice (a warm 100) and masked it in Solidity. −13 / −262.",
    "- *The loop in the first four words of memory* (scratch, free memory pointer, zero slot, put back after): fixed offsets instead of " +
      "offsets added to the free memory pointer a store, no memory expansion past 0x80, and the digest left where ecrecover reads it. About −66 / −157.",
    "- *Two jumps fewer a promise*: the high-s test joins the signer's, and the pair's-figure test joins the balance's " +
      "(`owed − 1` below the balance: an equal promise wraps to 2^256 − 1, a lower one past 2^255). −37 / −37. A promise that pays " +
      "nothing now reads its vault (a cold 2,100) before `_settleUncommon` skips it; the node sends only promises above the pair's figure.",
    "- *The calldata's end computed unchecked* (an offset and a length the decoder checked): −4 / −58. *Optimizer runs 1,000,000* " +
      "instead of 10,000: −1 / −24 (and −15 a deposit).",
    `- *A relayed batch* (not in the floor): the provider's signed claims are hashed in the scratch space and listed past the free memory ` +
      "pointer, instead of a Solidity array and an `abi.encode` allocation a claim (memory that grew with the batch): 430,263 → " +
      `${fmtGas(rows[`settle relayed batch of ${BATCH} (later)`])} for a later one of ${BATCH}, with the same digest (the relayed tests and the model test check it).`,
    "",
    "Measured and not taken: the vault through the IR pipeline (`viaIR`): −115 the first settle but +5 a batched promise and +129 a " +
      "later deposit, which would pass the 45,000 aim. A cheaper selector for `settle`/`settleBatch` (the dispatcher compares up to four " +
      "selectors, 22 gas each) and fixed-size arguments instead of `bytes` for `settle` (its decoder and offset words: about 400 gas of " +
      "the first settle) both change the ABI the node calls; not done.",
    "",
    "What would go below it, and why it is not done:",
    "",
    "- *Recover the consumer instead of sending it* (the signed Promise without its consumer field): −368 a promise (20 bytes of calldata). " +
      "A promise would no longer name its signer, and a wrong signature would settle some random, empty vault instead of reverting the batch " +
      "with `PromiseSignatureInvalid(consumer, recovered)`: the settler would learn nothing.",
    `- *An EIP-2930 access list* on the settling transaction: a slot named in advance costs 1,900 and then a warm 100 instead of a cold ` +
      `2,100 (−100 a slot, two a promise), but the vault's address in the list costs 2,400 a transaction although it is already warm as the ` +
      `transaction's target: −${fmtGas(2 * 100 - 2_400 / BATCH)} a promise in a batch of ${BATCH}, paid for by a node that must know the ` +
      "contract's storage layout. A node-side option, not a contract one; not done.",
    "- *No PromiseSettled* (−2,012) or one event per batch: every other provider's cache of this consumer's vault, and the consumer's own view, " +
      "follow these events by the consumer's topic; a batch event could not be filtered by consumer.",
    "- *No vault write*: a consumer could spend its balance once per provider; the overdraft would no longer be caught on chain. " +
      "*No pair slot*: promises could not be cumulative. Neither is a saving; both are the product.",
    "",
    `Against Hermes (${fmtGas(88_533)} a promise) a batched promise is ${(88_533 / perPromise || 0).toFixed(1)}× cheaper.`,
    "",
    "From the batch's opcode trace, divided by its promises (each external call counts all the gas its frame used):",
    "",
    ...table(batchBreakdown),
    "",
    "## The first settle: the floor",
    "",
    `A provider's very first settlement (its earnings slot and the pair's are both new) costs ${fmtGas(rows["settle (first)"])} against an aim of 75,000:`,
    "",
    ...floorTable(firstFloor, rows["settle (first)"]),
    "",
    "Above the floor, measured (the transaction's opcode trace by kind, less the floor's share of each kind):",
    "",
    ...aboveFloor(firstBreakdown, {
      "intrinsic (21,000 + calldata)": 21_000 + firstData.gas,
      SSTORE: 42_900,
      SLOAD: 6_300,
      ecrecover: 3_100,
      "events (LOG)": 2_012,
      KECCAK256: 234,
    }),
    "",
    "Two slots go from zero to non-zero (20,000 each, EIP-2200): the pair's settled figure, which is the replay protection of the pair's " +
      "cumulative promises, and the provider's earnings, where its money waits for `withdraw earnings`. With the transaction, ecrecover, the " +
      "vault's slot and the event that is above 75,000 before one opcode of logic; above the floor are the dispatch, the calldata's " +
      "decoding, the domain separator's checks, the loop's stores and jumps and the re-entrancy guard's check (one TLOAD; it set the guard " +
      "too, two TSTOREs, until issue 31's fourth pass: see the batch's section). The 20,000 of the earnings slot is paid " +
      `once per provider: a provider's new consumer costs ${fmtGas(rows["settle (new pair)"])} (the "settle (new pair)" row). ` +
      "Crediting earnings inside the pair's record instead would make the first settle about 22,000 cheaper, but every payout would then read and " +
      "clear one slot per pair (5,000 each) instead of one per provider: not done.",
    "",
    "## Where a later settle's gas goes",
    "",
    "From the transaction's opcode trace: each external call counts all the gas its frame used.",
    "",
    ...table(breakdown),
    "",
    "The vault's slot, the pair's slot and the provider's earnings slot are each read and written once (2,100 + 2,900 each when cold). " +
      `Against Hermes (${fmtGas(88_533)}) the saving comes from crediting instead of transferring MYST (a transfer costs about 15,000) and from ` +
      "not reading the registry on the way.",
    "",
    "## A later deposit: the floor",
    "",
    `A later deposit (the node's: \`transferAndCall\`, no allowance, no permit) costs ${fmtGas(rows["deposit (later)"])} against an aim of 45,000:`,
    "",
    ...floorTable(depositFloor, rows["deposit (later)"]),
    "",
    "Moving MYST changes two balances in the token and emits its Transfer; the vault's account is touched for the first time in the " +
      "transaction; the vault's slot changes and Deposited says so with the consumer's topic, the amount and the escrow. Deposited no longer " +
      "repeats what the chain already holds: who paid is the Transfer's `from`, and the vault's totals are `vault(consumer)` (it carried both " +
      "totals until issue 31's second pass: two words, 512 gas a deposit).",
    "",
    `What is above the floor is code, measured in the trace below: the token's ${fmtGas(tokenCode)} (dispatch among its 20 functions, ` +
      "OpenZeppelin's zero-address and balance checks, the ERC-1363 receiver check, the hook call's encoding and its answer's decoding) and " +
      `the vault's ${fmtGas(vaultCode)} (dispatch to its fallback, the checks of the call's layout, the token check, the overflow check, the ` +
      "event, the answer). Four changes took it down: the token goes through the IR pipeline (its frame: 1,850 → 1,389, OpenZeppelin's code " +
      "unchanged); a consumer's own deposit (no data) takes a short path in the vault (`_creditOwn`: no escrow, no funder comparison) with the " +
      "same checks and errors, and with the two-word event the vault's code went 1,670 → 1,307; and (issue 31's third pass) the hook is no " +
      "longer a declared function: the vault's `fallback` answers the token's `onTransferReceived` call, reading its three words itself " +
      "instead of through the ABI decoder (which also checked a `bytes` argument the common deposit leaves empty) and answering from the " +
      "scratch space, with the same checks in the same order (the layout, `from` a clean address, the token as the caller, then the data's) " +
      "and the same errors, and the own deposit's event is written from the scratch space too: 1,307 → " +
      `${fmtGas(vaultCode)}. ` +
      (rows["deposit (later)"] <= 45_000
        ? `That is ${fmtGas(45_000 - rows["deposit (later)"])} gas under the aim. `
        : `That leaves ${fmtGas(rows["deposit (later)"] - 45_000)} gas above the aim. `) +
      "What would still go, not done: an EIP-2930 access list naming the vault and the consumer's slot (2,400 + 1,900 and a warm 100 each, " +
      "against a cold 2,600 + 2,100: −200, a node that knows the vault's storage layout), an own deposit's event without the escrow word " +
      "(−256 a deposit, an event ABI of two shapes) and a hand-written token (assembly in place of OpenZeppelin's audited ERC-20). The node's " +
      `deposit used to be a permit (81,055 before issue 31; ${fmtGas(rows["deposit with permit (later)"])} now) or an approval plus a deposit ` +
      "(two transactions).",
    "",
    "From the transaction's opcode trace (the token's frame; the vault's hook counts all the gas its frame used):",
    "",
    ...table(depositBreakdown),
    "",
  ];
  fs.mkdirSync(path.join(root, "docs"), { recursive: true });
  fs.writeFileSync(path.join(root, "docs", "gas.md"), lines.join("\n"));
  console.log(lines.join("\n"));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
