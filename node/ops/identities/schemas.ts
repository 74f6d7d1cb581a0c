import { Type } from "@sinclair/typebox";
import { Address, Strict, Wei } from "../../values/schemas";

/** The schemas of the identity routes: request bodies refuse unknown fields. */

/** Responses may grow fields; clients ignore what they do not know. */
const Open = { additionalProperties: true } as const;

export const AddressParams = Type.Object({ address: Address }, Strict);

export const IdentityList = Type.Object({
  identities: Type.Array(
    Type.Object({
      address: Address,
      keystoreFile: Type.String(),
      node: Type.Boolean({ description: "the identity this daemon runs as" }),
      registered: Type.Union([Type.Boolean(), Type.Null()], { description: "null: the chain could not be asked" }),
    }),
  ),
});
export const NewIdentity = Type.Object({ passphrase: Type.String({ minLength: 1, description: "encrypts the keystore file; keep it with the file" }) }, Strict);
export const CreatedIdentity = Type.Object({ address: Address, keystoreFile: Type.String() });
export const ImportIdentity = Type.Object(
  {
    keystore: Type.String({ minLength: 2, maxLength: 16_384, description: "keystore v3 JSON (geth, ethers, MetaMask)" }),
    passphrase: Type.String({ description: "the passphrase it is encrypted with" }),
    newPassphrase: Type.Optional(Type.String({ minLength: 1, description: "re-encrypt with this one (else it is stored as is)" })),
    source: Type.Optional(Type.String({ maxLength: 4096, description: "where it came from, for error messages (e.g. the file name)" })),
  },
  Strict,
);
export const ExportIdentity = Type.Object(
  {
    passphrase: Type.Optional(Type.String({ description: "with newPassphrase: the current passphrase" })),
    newPassphrase: Type.Optional(Type.String({ minLength: 1, description: "re-encrypt under this passphrase (else the stored file as is)" })),
  },
  Strict,
);
export const ExportedIdentity = Type.Object({ address: Address, keystore: Type.String({ description: "keystore v3 JSON" }) });
export const Registration = Type.Object(
  {
    state: Type.Union([
      Type.Literal("unregistered"),
      Type.Literal("in-progress"),
      Type.Literal("registered"),
      Type.Literal("failed"),
      Type.Literal("unknown", { description: "the chain could not be asked (reason says why)" }),
    ]),
    identity: Address,
    beneficiary: Type.Optional(Address),
    txHash: Type.Optional(Type.String()),
    submittedAt: Type.Optional(Type.String()),
    code: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String()),
  },
  Open,
);
export const IdentityView = Type.Object({
  address: Address,
  node: Type.Boolean(),
  keystoreFile: Type.Union([Type.String(), Type.Null()]),
  publicKey: Type.Optional(Type.String({ description: "64-byte x‖y hex: when this is the node's own identity, unlocked" })),
  balanceWei: Type.Union([Wei, Type.Null()], { description: "MYST held by the account (null: the chain could not be asked)" }),
  registration: Registration,
});
export const RegisterBody = Type.Object(
  {
    passphrase: Type.Optional(Type.String({ minLength: 1, description: "needed unless it is the daemon's own identity" })),
    beneficiary: Type.Optional(Address),
    relayerKey: Type.Optional(
      Type.String({ description: "hex private key of a funded account that submits the registration and pays its gas (default: the identity itself)" }),
    ),
  },
  Strict,
);
