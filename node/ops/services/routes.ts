import type { Static } from "@sinclair/typebox";
import { OFFER_DEFAULTS } from "../../config/defaults";
import type { Offer } from "../../daemon/provider-node";
import { errorResponses as errors, type JsonApp } from "../../http/app";
import { mystToWei } from "../../values/myst";
import * as S from "./schemas";
import type { ServiceOps } from "./services";

/** The offer of a request body, in wei, with the defaults (config/offer.ts) for what it leaves out: parsed here, once. */
export function offerOf(o: Static<typeof S.StartServiceBody>["offer"]): Offer {
  return {
    country: (o?.country ?? OFFER_DEFAULTS.country).toUpperCase(),
    ...(o?.city ? { city: o.city } : {}),
    ...(o?.asn !== undefined ? { asn: o.asn } : {}),
    ...(o?.isp ? { isp: o.isp } : {}),
    ipType: o?.ipType ?? OFFER_DEFAULTS.ipType,
    pricePerHour: mystToWei(o?.pricePerHour ?? OFFER_DEFAULTS.pricePerHour, "offer.pricePerHour"),
    pricePerGiB: mystToWei(o?.pricePerGiB ?? OFFER_DEFAULTS.pricePerGiB, "offer.pricePerGiB"),
    bandwidthMbps: o?.bandwidthMbps ?? OFFER_DEFAULTS.bandwidthMbps,
  };
}

/** `/v1/services…`: what this node sells. */
export function serviceRoutes(app: JsonApp, ops: ServiceOps): void {
  const tags = ["services"];
  app.get("/v1/services", { schema: { summary: "Services this node sells", tags, response: { 200: S.ServiceList, ...errors(401) } } }, async () => ({
    services: ops.list(),
  }));
  app.post(
    "/v1/services",
    {
      schema: {
        summary: "Start selling a service (remembered across restarts)",
        tags,
        body: S.StartServiceBody,
        response: { 201: S.ServiceView, ...errors(400, 401, 409, 422) },
      },
    },
    async (req, reply) => {
      // The spec is the body without the offer: its type, that type's settings, the controls.
      const { offer, ...spec } = req.body;
      return reply.status(201).send(await ops.start(spec, offerOf(offer)));
    },
  );
  app.delete(
    "/v1/services/:type",
    {
      schema: {
        summary: "Stop selling a service: its sessions end, its proposal is withdrawn",
        tags,
        params: S.ServiceTypeParams,
        response: { 200: S.StoppedService, ...errors(401, 404) },
      },
    },
    async (req) => ops.stop(req.params.type),
  );
}
