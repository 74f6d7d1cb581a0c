import { FetchRequest, type FetchGetUrlFunc } from "ethers";

const plainGetUrl = FetchRequest.createGetUrlFunc();

/**
 * ethers' own HTTP call, tried once more on a fresh connection when the node closed a kept-alive
 * connection just as the call went out on it ("socket hang up", ECONNRESET). Node's agent keeps
 * idle connections open and the JSON-RPC server closes them after its keep-alive timeout (5 s for
 * `hardhat node`); a client whose event loop is busy past its own 4 s timer reuses a connection the
 * server has already closed (nodejs/node#20256). Node's documentation says to retry such a call;
 * every JSON-RPC call the node makes is safe to send twice (a signed transaction sent again is the
 * same transaction).
 */
export const retryingGetUrl: FetchGetUrlFunc = async (req, signal) => {
  try {
    return await plainGetUrl(req, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ECONNRESET") throw err;
    return plainGetUrl(req, signal);
  }
};

/** A JSON-RPC request to `url` with `retryingGetUrl` and, when given, a per-call timeout. */
export function rpcRequest(url: string, timeoutMs?: number): FetchRequest {
  const request = new FetchRequest(url);
  request.getUrlFunc = retryingGetUrl;
  if (timeoutMs !== undefined) request.timeout = timeoutMs;
  return request;
}
