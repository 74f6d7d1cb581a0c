import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Address } from "../values/schemas";
import type { IdentityKey } from "../identity/key";
import { checkSigner, type SignerCheck, type SignerDirectory } from "../identity/protocol-signature";
import { ProposalError } from "../proposal/proposal";

/** The NATS subjects discovery replicas listen on. Every replica hears every announcement. */
export const DISCOVERY_SUBJECTS = {
  register: "myst.discovery.register",
  ping: "myst.discovery.ping",
  unregister: "myst.discovery.unregister",
  /** A consumer's signed session receipt (node/quality/receipt.ts); no reply. */
  receipt: "myst.discovery.receipt",
} as const;

/** `{"unregister": "<JSON {provider, serviceType, at}>", "signature": "0x…"}`, signed by the provider. */
export const SignedUnregisterSchema = Type.Object(
  { unregister: Type.String({ maxLength: 512 }), signature: Type.String({ pattern: "^0x[0-9a-fA-F]{128}$" }) },
  { additionalProperties: false },
);
export type SignedUnregister = Static<typeof SignedUnregisterSchema>;
const UnregisterSchema = Type.Object(
  {
    provider: Address,
    serviceType: Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }),
    at: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
const checkSigned = TypeCompiler.Compile(SignedUnregisterSchema);
const checkBody = TypeCompiler.Compile(UnregisterSchema);

export function signUnregister(key: IdentityKey, serviceType: string, at = Date.now()): SignedUnregister {
  const text = JSON.stringify({ provider: key.address, serviceType, at });
  return { unregister: text, signature: "0x" + Buffer.from(key.signProtocol(Buffer.from(text))).toString("hex") };
}

export interface Unregister {
  provider: string;
  serviceType: string;
  at: number;
}

/** Checks that `claimed` signed `bytes` (checkSigner, or the same check on discovery's signature threads). */
export type SignerCheckFn = (claimed: string, bytes: Uint8Array, signature: Uint8Array, directory: SignerDirectory) => Promise<SignerCheck>;

/** Parses and verifies an unregister: shape, then a signature by the provider it names, a registered one. */
export async function verifyUnregister(input: unknown, directory: SignerDirectory, check: SignerCheckFn = checkSigner): Promise<Unregister> {
  if (!checkSigned.Check(input)) throw new ProposalError("UNREGISTER_MALFORMED", "unregister message does not match the schema");
  let body: unknown;
  try {
    body = JSON.parse(input.unregister);
  } catch {
    throw new ProposalError("UNREGISTER_MALFORMED", "unregister body is not JSON");
  }
  if (!checkBody.Check(body)) throw new ProposalError("UNREGISTER_MALFORMED", "unregister body does not match the schema");
  const signer = await check(body.provider, Buffer.from(input.unregister), Buffer.from(input.signature.slice(2), "hex"), directory);
  if ("fail" in signer && signer.fail === "bad-signature") throw new ProposalError("BAD_SIGNATURE", `the unregister message is not signed by ${body.provider}`);
  if ("fail" in signer) throw new ProposalError("PROVIDER_UNREGISTERED", `provider ${body.provider} is not a registered identity`);
  return body;
}

/** The reply a replica gives to a `register` request. */
export type AnnounceReply = { ok: true; result: string } | { ok: false; code: string; message: string };
