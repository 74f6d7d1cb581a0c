import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { MystError } from "../errors/MystError";
import type { IdentityKey } from "../identity/key";
import { checkSigner, type SignerDirectory } from "../identity/protocol-signature";
import { sameAddress } from "../values/address";
import { isPublicAddress } from "../values/ip";
import { Address, Wei } from "../values/schemas";

/**
 * A provider's offer: who, what, where, for how much, how much, and how to reach it. It travels
 * as the exact JSON string the provider signed (`SignedProposal.proposal`), so verification never
 * depends on re-serialization. See docs/protocol.md.
 */

export const PROPOSAL_FORMAT = "myst-proposal/1";
export const IP_TYPES = ["residential", "hosting", "mobile", "business", "education", "unknown"] as const;
export type IpType = (typeof IP_TYPES)[number];

/** An amount in token wei, as a decimal string (no sign, no leading zeros, at most 78 digits). */
export const WeiString = Wei;

/** How to reach the provider's node: the broker (its dialog subject). */
export const NatsContactSchema = Type.Object(
  {
    type: Type.Literal("nats/v1"),
    brokerUrls: Type.Array(Type.String({ maxLength: 256 }), { minItems: 1, maxItems: 8 }),
    subject: Type.String({ maxLength: 256, pattern: "^[A-Za-z0-9_.-]+$" }),
  },
  { additionalProperties: false },
);

/**
 * How to reach the provider's node directly (docs/reachability.md): its NAT as measured and its
 * public candidates — "public" (its own address), "mapped" (a port its router opened), "punch-only"
 * (the mapping STUN saw, open only to a peer that sends at the same time). Never a private address:
 * a proposal naming one is malformed.
 */
export const DirectContactSchema = Type.Object(
  {
    type: Type.Literal("direct/v1"),
    nat: Type.Object(
      {
        mapping: Type.Union([Type.Literal("none"), Type.Literal("endpoint-independent"), Type.Literal("endpoint-dependent"), Type.Literal("unknown")]),
        filtering: Type.Union([
          Type.Literal("endpoint-independent"),
          Type.Literal("address-dependent"),
          Type.Literal("address-and-port-dependent"),
          Type.Literal("unknown"),
        ]),
      },
      { additionalProperties: false },
    ),
    candidates: Type.Array(
      Type.Object(
        {
          kind: Type.Union([Type.Literal("public"), Type.Literal("mapped"), Type.Literal("punch-only")]),
          address: Type.String({ minLength: 2, maxLength: 45, pattern: "^[0-9A-Fa-f:.]+$" }),
          port: Type.Integer({ minimum: 1, maximum: 65535 }),
          protocol: Type.Union([Type.Literal("udp"), Type.Literal("tcp")]),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 8 },
    ),
  },
  { additionalProperties: false },
);
export type NatsContact = Static<typeof NatsContactSchema>;
export type DirectContact = Static<typeof DirectContactSchema>;

export const ProposalSchema = Type.Object(
  {
    format: Type.Literal(PROPOSAL_FORMAT),
    provider: Address,
    serviceType: Type.String({ pattern: "^[a-z][a-z0-9-]{0,31}$" }),
    location: Type.Object(
      {
        country: Type.String({ pattern: "^[A-Z]{2}$" }),
        city: Type.Optional(Type.String({ maxLength: 64 })),
        asn: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967295 })),
        isp: Type.Optional(Type.String({ maxLength: 128 })),
        ipType: Type.Union(IP_TYPES.map((t) => Type.Literal(t))),
      },
      { additionalProperties: false },
    ),
    price: Type.Object({ currency: Type.Literal("MYST"), perHour: WeiString, perGiB: WeiString }, { additionalProperties: false }),
    /** Committed bandwidth, Mbit/s. */
    bandwidthMbps: Type.Number({ minimum: 0, maximum: 1_000_000 }),
    /** The tunnel carries IPv6 (the provider has IPv6 egress); absent: IPv4 only. */
    ipv6: Type.Optional(Type.Boolean()),
    /** Who may connect: "allowlist" when only listed consumers may; absent or "open": anyone the provider has not denied. */
    accessPolicy: Type.Optional(Type.Union([Type.Literal("open"), Type.Literal("allowlist")])),
    contacts: Type.Array(Type.Union([NatsContactSchema, DirectContactSchema]), { minItems: 1, maxItems: 4 }),
    /**
     * What the service's tunnel needs of the provider's reachability. "public-or-mapped": the
     * consumer's tunnel opens a connection to the provider's address and nothing of the provider's
     * goes out first (OpenVPN), so it works only with a provider that has a public address or a port
     * its router maps — never one reachable only by hole punching. Absent: the tunnel can follow a
     * punched path (WireGuard) or needs nothing (noop).
     */
    reach: Type.Optional(Type.Literal("public-or-mapped")),
    /** Milliseconds since the epoch. A newer proposal replaces an older one, never the reverse. */
    createdAt: Type.Integer({ minimum: 0 }),
    expiresAt: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type Proposal = Static<typeof ProposalSchema>;

export const SignedProposalSchema = Type.Object(
  {
    proposal: Type.String({ maxLength: 8192 }),
    /** 64-byte ECDSA-SHA256 signature (r‖s) by the provider's identity key, hex. */
    signature: Type.String({ pattern: "^0x[0-9a-fA-F]{128}$" }),
  },
  { additionalProperties: false },
);
export type SignedProposal = Static<typeof SignedProposalSchema>;

const checkProposal = TypeCompiler.Compile(ProposalSchema);
const checkSigned = TypeCompiler.Compile(SignedProposalSchema);

export type ProposalErrorCode =
  | "BAD_SIGNATURE"
  | "PROPOSAL_EXPIRED"
  | "PROPOSAL_FROM_FUTURE"
  | "PROPOSAL_MALFORMED"
  | "PROPOSAL_NOT_OURS"
  | "PROVIDER_UNREGISTERED"
  | "UNREGISTER_MALFORMED";

export class ProposalError extends MystError<ProposalErrorCode> {}

export function signProposal(key: IdentityKey, proposal: Proposal): SignedProposal {
  if (!sameAddress(proposal.provider, key.address)) {
    throw new ProposalError("PROPOSAL_NOT_OURS", `the proposal names ${proposal.provider}, not ${key.address}`);
  }
  const text = JSON.stringify(proposal);
  return { proposal: text, signature: "0x" + Buffer.from(key.signProtocol(Buffer.from(text))).toString("hex") };
}

/** Checks shape only (no signature): what any untrusted input goes through first. */
export function parseSignedProposal(input: unknown): { signed: SignedProposal; proposal: Proposal } {
  if (!checkSigned.Check(input)) throw new ProposalError("PROPOSAL_MALFORMED", `signed proposal ${firstError(checkSigned, input)}`);
  let proposal: unknown;
  try {
    proposal = JSON.parse(input.proposal);
  } catch {
    throw new ProposalError("PROPOSAL_MALFORMED", "proposal is not JSON");
  }
  if (!checkProposal.Check(proposal)) throw new ProposalError("PROPOSAL_MALFORMED", `proposal ${firstError(checkProposal, proposal)}`);
  if (proposal.expiresAt <= proposal.createdAt) throw new ProposalError("PROPOSAL_MALFORMED", "proposal expires before it was created");
  for (const contact of proposal.contacts)
    if (contact.type === "direct/v1")
      for (const c of contact.candidates)
        if (!isPublicAddress(c.address)) throw new ProposalError("PROPOSAL_MALFORMED", `a direct contact names ${c.address}, which is not a public address`);
  return { signed: input, proposal };
}

export interface VerifyOptions extends SignerDirectory {
  /** The registry: the provider must be registered, and this is its key (asked only for a signature that is the provider's own). */
  publicKeyOf(identity: string): Promise<Uint8Array | null>;
  now?: number;
  /** Accepted clock difference for `createdAt` in the future. Default 60 s. */
  clockSkewMs?: number;
}

/** Parses and verifies: shape, signature by the named provider, that provider registered, not expired. */
export async function verifySignedProposal(input: unknown, options: VerifyOptions): Promise<{ signed: SignedProposal; proposal: Proposal }> {
  const { signed, proposal } = parseSignedProposal(input);
  // Signature first (no chain call), then the registry.
  const signer = await checkSigner(proposal.provider, Buffer.from(signed.proposal), Buffer.from(signed.signature.slice(2), "hex"), options);
  if ("fail" in signer && signer.fail === "bad-signature") {
    throw new ProposalError("BAD_SIGNATURE", `the proposal is not signed by its provider ${proposal.provider}`);
  }
  if ("fail" in signer) throw new ProposalError("PROVIDER_UNREGISTERED", `provider ${proposal.provider} is not a registered identity`);
  const now = options.now ?? Date.now();
  if (proposal.expiresAt <= now) throw new ProposalError("PROPOSAL_EXPIRED", `the proposal expired at ${new Date(proposal.expiresAt).toISOString()}`);
  if (proposal.createdAt > now + (options.clockSkewMs ?? 60_000)) {
    throw new ProposalError("PROPOSAL_FROM_FUTURE", "the proposal was created in the future (clock skew?)");
  }
  return { signed, proposal };
}

/**
 * The part of a proposal a session is agreed on: a re-signed proposal with new times keeps it, and
 * so does one whose direct contacts changed (a new mapping after a network change is how to reach
 * the provider, not what was agreed).
 */
export function proposalTerms(p: Proposal): string {
  return JSON.stringify([p.provider.toLowerCase(), p.serviceType, p.price, p.contacts.filter((c) => c.type !== "direct/v1")]);
}

/** The proposal's broker contact (every valid proposal has one the provider listens on). */
export function natsContactOf(p: Proposal): NatsContact | undefined {
  return p.contacts.find((c): c is NatsContact => c.type === "nats/v1");
}

/**
 * Why a consumer's tunnel cannot reach this proposal's provider, in words, or undefined when it can
 * as far as the proposal says: a "public-or-mapped" service (OpenVPN) from a provider whose
 * measured contacts are all punch-only. A provider that measured nothing says no more than its
 * service's address (a forwarded port, an operator's word), which is taken as it is.
 */
export function unreachableReason(p: Proposal): string | undefined {
  if (p.reach !== "public-or-mapped") return undefined;
  const direct = directContactOf(p);
  if (!direct || direct.candidates.some((c) => c.kind === "public" || c.kind === "mapped")) return undefined;
  const behind =
    direct.nat.mapping === "none"
      ? "it has a public address behind a firewall that lets in only what it asked for"
      : direct.nat.mapping === "endpoint-dependent"
        ? "it is behind a router that gives each destination a new port"
        : "it is behind a router that forwards no port to it";
  return `provider ${p.provider} can be reached only by hole punching (${behind}), and a ${p.serviceType} tunnel needs a provider with a public address or a port its router maps: choose a proposal of a tunnel type that punches (wireguard) or another provider`;
}

/** The proposal's direct contact, when the provider measured one. */
export function directContactOf(p: Proposal): DirectContact | undefined {
  return p.contacts.find((c): c is DirectContact => c.type === "direct/v1");
}

function firstError(checker: { Errors(v: unknown): { First(): { path: string; message: string } | undefined } }, value: unknown): string {
  const e = checker.Errors(value).First();
  return e ? `${e.path || "/"}: ${e.message}` : "is malformed";
}
