import { errorResponses as errors, type JsonApp } from "../../http/app";
import { MystError } from "../../errors/MystError";
import { IdentityKey } from "../../identity/key";
import { toAddress } from "../../values/address";
import type { IdentityOps } from "./identities";
import * as S from "./schemas";

/** A relayer's key as the API takes it (hex); parsed here, once. */
function relayerKey(hex: string | undefined): IdentityKey | undefined {
  if (hex === undefined) return undefined;
  try {
    return IdentityKey.fromHex(hex.trim());
  } catch (err) {
    throw new MystError("RELAYER_KEY_INVALID", "the relayer key is not a 32-byte hex private key", { cause: err });
  }
}

/** `/v1/identities…`: the keystore, import and export, registration. */
export function identityRoutes(app: JsonApp, ops: IdentityOps): void {
  const tags = ["identities"];
  app.get("/v1/identities", { schema: { summary: "Identities in the keystore", tags, response: { 200: S.IdentityList, ...errors(401, 502) } } }, async () => ({
    identities: await ops.list(),
  }));
  app.post(
    "/v1/identities",
    { schema: { summary: "Create an identity (keystore v3 file)", tags, body: S.NewIdentity, response: { 201: S.CreatedIdentity, ...errors(400, 401) } } },
    async (req, reply) => reply.status(201).send(await ops.create(req.body.passphrase)),
  );
  app.post(
    "/v1/identities/import",
    {
      schema: {
        summary: "Import an identity from keystore v3 JSON (geth, ethers, MetaMask), checked with its passphrase",
        tags,
        body: S.ImportIdentity,
        response: { 201: S.CreatedIdentity, ...errors(400, 401, 403, 409, 422) },
      },
    },
    async (req, reply) => reply.status(201).send(await ops.import(req.body)),
  );
  app.post(
    "/v1/identities/:address/export",
    {
      schema: {
        summary: "An identity's keystore v3 JSON, as stored or re-encrypted under a new passphrase",
        tags,
        params: S.AddressParams,
        body: S.ExportIdentity,
        response: { 200: S.ExportedIdentity, ...errors(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const { passphrase, newPassphrase } = req.body;
      if (newPassphrase !== undefined && passphrase === undefined)
        throw new MystError("PASSPHRASE_REQUIRED", "re-encrypting an export needs the current passphrase too");
      const id = toAddress(req.params.address, "identity");
      return ops.export(id, newPassphrase === undefined ? undefined : { passphrase: passphrase!, newPassphrase });
    },
  );
  app.get(
    "/v1/identities/:address",
    {
      schema: {
        summary: "An identity: keystore, MYST balance, registration",
        tags,
        params: S.AddressParams,
        response: { 200: S.IdentityView, ...errors(400, 401, 502) },
      },
    },
    async (req) => ops.show(toAddress(req.params.address, "identity")),
  );
  app.post(
    "/v1/identities/:address/registration",
    {
      schema: {
        summary: "Register an identity on chain (it pays the gas)",
        tags,
        params: S.AddressParams,
        body: S.RegisterBody,
        response: { 200: S.Registration, ...errors(400, 401, 403, 404, 422, 502) },
      },
    },
    async (req) => {
      const { beneficiary, passphrase } = req.body;
      return ops.register(toAddress(req.params.address, "identity"), {
        passphrase,
        beneficiary: beneficiary === undefined ? undefined : toAddress(beneficiary, "beneficiary"),
        relayer: relayerKey(req.body.relayerKey),
      });
    },
  );
}
