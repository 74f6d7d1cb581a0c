import { MystError } from "../errors/MystError";

/** Anything that went wrong talking to the chain, with the revert decoded where there is one. */
export class ChainError extends MystError {}

interface EthersLikeError {
  code?: string;
  shortMessage?: string;
  revert?: { name: string; args: unknown[] } | null;
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
    if (e.revert) {
      const args = e.revert.args.map((a) => String(a)).join(", ");
      return new ChainError("TX_REVERTED", `${doing} reverted: ${e.revert.name}(${args})`, { cause: err });
    }
    return new ChainError("TX_REVERTED", `${doing} reverted${e.reason ? `: ${e.reason}` : ""}`, { cause: err });
  }
  if (e.code === "INSUFFICIENT_FUNDS") {
    return new ChainError("INSUFFICIENT_FUNDS", `${doing}: the sending account cannot pay for gas`, { cause: err });
  }
  if (e.code === "NETWORK_ERROR" || e.code === "SERVER_ERROR" || e.code === "TIMEOUT") {
    return new ChainError("CHAIN_UNREACHABLE", `${doing}: the chain did not answer (${e.shortMessage ?? e.code})`, { cause: err });
  }
  const detail = e.shortMessage ?? (err instanceof Error ? err.message : String(err));
  return new ChainError("CHAIN_ERROR", `${doing}: ${detail.split("\n")[0]}`, { cause: err });
}

/** The name of the custom error a ChainError carries, if any. */
export function revertName(err: unknown): string | undefined {
  const cause = (err as { cause?: EthersLikeError })?.cause;
  return cause?.revert?.name ?? (err as EthersLikeError)?.revert?.name ?? undefined;
}
