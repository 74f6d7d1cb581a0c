import fs from "node:fs";
import type { SignerDirectory } from "../../node/identity/protocol-signature";
import { IdentityKey } from "../../node/identity/key";
import { signProposal, type SignedProposal } from "../../node/proposal/proposal";
import { makeProposal } from "./proposals";

const COUNTRIES = ["DE", "US", "FR", "GB", "NL", "JP", "BR", "IN", "CA", "SE"];

/**
 * Many providers for discovery at scale. Their public keys are known to a directory in memory (the
 * registry's cache when warm), so thousands of providers need no chain transactions.
 */
export class ProviderFleet {
  readonly keys: IdentityKey[];
  readonly #byAddress: Map<string, Uint8Array>;

  constructor(count: number) {
    this.keys = Array.from({ length: count }, () => IdentityKey.generate());
    this.#byAddress = new Map(this.keys.map((k) => [k.address.toLowerCase(), k.publicKey]));
  }

  /** A registry whose every identity is one of the fleet. */
  get directory(): SignerDirectory {
    return {
      publicKeyOf: async (id) => this.#byAddress.get(id.toLowerCase()) ?? null,
      knownPublicKeyOf: (id) => this.#byAddress.get(id.toLowerCase()),
    };
  }

  /** `count` signed proposals: provider i % fleet size, service type `svc-<round>`. */
  sign(count: number, from = 0): SignedProposal[] {
    const out: SignedProposal[] = [];
    for (let i = from; i < from + count; i++) {
      const key = this.keys[i % this.keys.length];
      out.push(
        signProposal(
          key,
          makeProposal(key, {
            serviceType: `svc-${Math.floor(i / this.keys.length)}`,
            location: { country: COUNTRIES[i % COUNTRIES.length] },
            price: { perHour: String((i % 100) * 1e15), perGiB: String((i % 37) * 1e15) },
            bandwidthMbps: (i % 20) * 50,
          }),
        ),
      );
    }
    return out;
  }

  /** Writes `{address: public key hex}` for a replica in another process (see discovery-replica.ts). */
  writeKeys(file: string): void {
    fs.writeFileSync(file, JSON.stringify(Object.fromEntries(this.keys.map((k) => [k.address, Buffer.from(k.publicKey).toString("hex")]))));
  }
}

/** The directory a replica process builds from `writeKeys`'s file. */
export function directoryFromKeysFile(file: string): SignerDirectory {
  const keys = new Map<string, Uint8Array>(
    Object.entries(JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, string>).map(([a, k]) => [a.toLowerCase(), Buffer.from(k, "hex")]),
  );
  return { publicKeyOf: async (id) => keys.get(id.toLowerCase()) ?? null, knownPublicKeyOf: (id) => keys.get(id.toLowerCase()) };
}
