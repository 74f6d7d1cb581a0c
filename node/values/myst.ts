import { parseUnits } from "ethers";
import { MystError } from "../errors/MystError";

/** MYST (decimal, e.g. "0.05") → wei, with an error naming where the amount came from. */
export function mystToWei(value: string, name: string): bigint {
  if (!/^\d{1,20}(\.\d{1,18})?$/.test(value)) throw new MystError("BAD_AMOUNT", `${name} "${value}" is not an amount of MYST (e.g. 0.05)`);
  return parseUnits(value, 18);
}
