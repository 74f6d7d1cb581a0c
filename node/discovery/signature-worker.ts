import { parentPort } from "node:worker_threads";
import { recoverClaimedSigner, verifyBytes } from "../identity/protocol-signature";
import type { SignatureTask, SignatureResult } from "./signature-workers";

/**
 * One signature-checking thread of discovery's pool. Each thread keeps its own cache of decoded
 * public keys (protocol-signature's KeyObject cache is per module instance, so per thread).
 */
parentPort!.on("message", (tasks: SignatureTask[]) => {
  const results: SignatureResult[] = tasks.map((t) => {
    if (t.known) return { id: t.id, valid: verifyBytes(t.known, t.bytes, t.signature) };
    return { id: t.id, recovered: recoverClaimedSigner(t.claimed, t.bytes, t.signature) };
  });
  parentPort!.postMessage(results);
});
parentPort!.postMessage("ready");
