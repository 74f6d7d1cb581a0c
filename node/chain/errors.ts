import { isError, type Interface } from "ethers";
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

/**
 * Turns an ethers error into a ChainError at the boundary, told apart with ethers' own `isError`:
 * a contract's custom error by name and arguments, insufficient funds, a moved nonce, an
 * unreachable node. Nothing downstream parses ethers messages.
 */
export function toChainError(err: unknown, doing: string): ChainError {
  if (err instanceof ChainError) return err;
  if (isError(err, "CALL_EXCEPTION")) {
    const revert = err.revert ?? decodeRevert(err.data);
    if (revert) {
      const args = revert.args.map((a) => String(a)).join(", ");
      const chainErr = new ChainError("TX_REVERTED", `${doing} reverted: ${revert.name}(${args})`, { cause: err });
      chainErr.revert = { name: revert.name, args: [...revert.args] };
      return chainErr;
    }
    return new ChainError("TX_REVERTED", `${doing} reverted${err.reason ? `: ${err.reason}` : ""}`, { cause: err });
  }
  if (isError(err, "INSUFFICIENT_FUNDS")) {
    return new ChainError("INSUFFICIENT_FUNDS", `${doing}: the sending account cannot pay for gas`, { cause: err });
  }
  const short = (err as { shortMessage?: string } | null)?.shortMessage;
  const code = (err as { code?: string } | null)?.code;
  if (
    isError(err, "NONCE_EXPIRED") ||
    isError(err, "REPLACEMENT_UNDERPRICED") ||
    /nonce too low|nonce has already been used|already known/i.test(short ?? (err instanceof Error ? err.message : ""))
  ) {
    return new ChainError("NONCE_CONFLICT", `${doing}: the account's nonce moved (${short ?? code})`, { cause: err });
  }
  // ECONNREFUSED and ECONNRESET come from node's sockets, below ethers.
  if (isError(err, "NETWORK_ERROR") || isError(err, "SERVER_ERROR") || isError(err, "TIMEOUT") || code === "ECONNREFUSED" || code === "ECONNRESET") {
    return new ChainError("CHAIN_UNREACHABLE", `${doing}: the chain did not answer (${short ?? code})`, { cause: err });
  }
  const detail = short ?? (err instanceof Error ? err.message : String(err));
  return new ChainError("CHAIN_ERROR", `${doing}: ${detail.split("\n")[0]}`, { cause: err });
}

/** The name of the custom error a ChainError carries, if any. */
export function revertName(err: unknown): string | undefined {
  return err instanceof ChainError ? err.revert?.name : undefined;
}
