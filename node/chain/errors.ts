import type { Interface } from "ethers";
import { MystError } from "../errors/MystError";
import { ConsumerVault__factory, IdentityRegistry__factory, MystToken__factory } from "../../typechain-types";

/** The contracts' ABIs, to name a custom error that ethers could not attribute to a call. */
const INTERFACES: Interface[] = [IdentityRegistry__factory.createInterface(), ConsumerVault__factory.createInterface(), MystToken__factory.createInterface()];

function decodeRevert(data: unknown): { name: string; args: unknown[] } | null {
  if (typeof data !== "string" || data.length < 10) return null;
  for (const iface of INTERFACES) {
    try {
      const parsed = iface.parseError(data);
      if (parsed) return { name: parsed.name, args: [...parsed.args] };
    } catch {
      // not this contract's error
    }
  }
  return null;
}

/** Anything that went wrong talking to the chain, with the revert decoded where there is one. */
export type ChainErrorCode = "CHAIN_ERROR" | "CHAIN_MISMATCH" | "CHAIN_UNREACHABLE" | "INSUFFICIENT_FUNDS" | "NO_CONTRACT" | "NONCE_CONFLICT" | "TX_REVERTED";

export class ChainError extends MystError<ChainErrorCode> {
  /** The contract's custom error, when the chain reverted with one. */
  revert?: { name: string; args: unknown[] };
}

interface EthersLikeError {
  code?: string;
  shortMessage?: string;
  revert?: { name: string; args: unknown[] } | null;
  data?: unknown;
  reason?: string | null;
  error?: { message?: string };
}

/**
 * Turns an ethers error into a ChainError at the boundary: a contract's custom error by name and
 * arguments, insufficient funds, an unreachable node. Nothing downstream parses ethers messages.
 */
export function toChainError(err: unknown, doing: string): ChainError {
  if (err instanceof ChainError) return err;
  const e = (err ?? {}) as EthersLikeError;
  if (e.code === "CALL_EXCEPTION") {
    const revert = e.revert ?? decodeRevert(e.data);
    if (revert) {
      const args = revert.args.map((a) => String(a)).join(", ");
      const chainErr = new ChainError("TX_REVERTED", `${doing} reverted: ${revert.name}(${args})`, { cause: err });
      chainErr.revert = revert;
      return chainErr;
    }
    return new ChainError("TX_REVERTED", `${doing} reverted${e.reason ? `: ${e.reason}` : ""}`, { cause: err });
  }
  if (e.code === "INSUFFICIENT_FUNDS") {
    return new ChainError("INSUFFICIENT_FUNDS", `${doing}: the sending account cannot pay for gas`, { cause: err });
  }
  if (
    e.code === "NONCE_EXPIRED" ||
    e.code === "REPLACEMENT_UNDERPRICED" ||
    /nonce too low|nonce has already been used|already known/i.test(e.shortMessage ?? (err instanceof Error ? err.message : ""))
  ) {
    return new ChainError("NONCE_CONFLICT", `${doing}: the account's nonce moved (${e.shortMessage ?? e.code})`, { cause: err });
  }
  if (e.code === "NETWORK_ERROR" || e.code === "SERVER_ERROR" || e.code === "TIMEOUT" || e.code === "ECONNREFUSED" || e.code === "ECONNRESET") {
    return new ChainError("CHAIN_UNREACHABLE", `${doing}: the chain did not answer (${e.shortMessage ?? e.code})`, { cause: err });
  }
  const detail = e.shortMessage ?? (err instanceof Error ? err.message : String(err));
  return new ChainError("CHAIN_ERROR", `${doing}: ${detail.split("\n")[0]}`, { cause: err });
}

/** The name of the custom error a ChainError carries, if any. */
export function revertName(err: unknown): string | undefined {
  return err instanceof ChainError ? err.revert?.name : undefined;
}
