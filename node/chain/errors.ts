import { isError, Transaction, type Interface } from "ethers";
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
  // ethers knows geth's "insufficient funds"; Hardhat says "Sender doesn't have enough funds", which
  // ethers cannot place ("could not coalesce error", UNKNOWN_ERROR): the node's own words are inside.
  const nodeWords = rpcMessage(err);
  if (isError(err, "INSUFFICIENT_FUNDS") || (isError(err, "UNKNOWN_ERROR") && nodeWords && OUT_OF_GAS_MONEY.test(nodeWords))) {
    const from = senderOf(err);
    const detail = nodeWords && OUT_OF_GAS_MONEY.test(nodeWords) ? ` (the chain says: ${nodeWords.split("\n")[0]})` : "";
    return new ChainError("INSUFFICIENT_FUNDS", `${doing}: the sending account${from ? ` ${from}` : ""} has too little ETH to pay for gas; fund it${detail}`, {
      cause: err,
    });
  }
  const short = isError(err, "UNKNOWN_ERROR") && nodeWords ? nodeWords : (err as { shortMessage?: string } | null)?.shortMessage;
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

const OUT_OF_GAS_MONEY = /insufficient funds|doesn't have enough funds|not enough funds|insufficient balance for transfer/i;

/** What the JSON-RPC node itself said, under an ethers error that could not name it. */
function rpcMessage(err: unknown): string | undefined {
  const e = err as { error?: { message?: unknown }; info?: { error?: { message?: unknown } } } | null;
  const m = e?.error?.message ?? e?.info?.error?.message;
  return typeof m === "string" && m.length > 0 ? m : undefined;
}

/** The account that sent the failed transaction, when ethers kept it. */
function senderOf(err: unknown): string | undefined {
  const e = err as { transaction?: { from?: unknown }; payload?: { method?: unknown; params?: unknown[] } } | null;
  let from = e?.transaction?.from;
  if (from === undefined && e?.payload?.method === "eth_sendRawTransaction" && typeof e.payload.params?.[0] === "string") {
    try {
      from = Transaction.from(e.payload.params[0]).from ?? undefined;
    } catch {
      // not a signed transaction: no sender to name
    }
  }
  return typeof from === "string" && /^0x[0-9a-fA-F]{40}$/.test(from) ? from : undefined;
}

/** The name of the custom error a ChainError carries, if any. */
export function revertName(err: unknown): string | undefined {
  return err instanceof ChainError ? err.revert?.name : undefined;
}
