import fs from "node:fs";
import path from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { ControlsSettingsSchema } from "../../services/controls/settings-schema";
import { Strict, Wei } from "../../values/schemas";
import { MystError } from "../../errors/MystError";
import { IP_TYPES } from "../../proposal/proposal";
import { SERVICE_TYPES, settingsProperties } from "../../services/catalog";
import type { Offer } from "../../daemon/provider-node";

/** An offer as the API and the services file carry it (prices in wei, as decimal strings). */
const OfferJsonSchema = Type.Object(
  {
    country: Type.String({ pattern: "^[A-Za-z]{2}$" }),
    city: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    asn: Type.Optional(Type.Integer({ minimum: 0 })),
    isp: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    ipType: Type.Union(IP_TYPES.map((t) => Type.Literal(t))),
    pricePerHourWei: Wei,
    pricePerGiBWei: Wei,
    bandwidthMbps: Type.Number({ minimum: 0 }),
  },
  Strict,
);
export type OfferJson = Static<typeof OfferJsonSchema>;

/** The offer a node sells under (prices in wei), from the form the file and the API's views carry. */
export function offerFromJson(o: OfferJson): Offer {
  return {
    country: o.country.toUpperCase(),
    city: o.city,
    asn: o.asn,
    isp: o.isp,
    ipType: o.ipType,
    pricePerHour: BigInt(o.pricePerHourWei),
    pricePerGiB: BigInt(o.pricePerGiBWei),
    bandwidthMbps: o.bandwidthMbps,
  };
}

/** The offer as the file and the API's views carry it (wei as decimal strings). */
export function offerToJson(o: Offer): OfferJson {
  return {
    country: o.country,
    ...(o.city ? { city: o.city } : {}),
    ...(o.asn !== undefined ? { asn: o.asn } : {}),
    ...(o.isp ? { isp: o.isp } : {}),
    ipType: o.ipType,
    pricePerHourWei: o.pricePerHour.toString(),
    pricePerGiBWei: o.pricePerGiB.toString(),
    bandwidthMbps: o.bandwidthMbps,
  };
}

/** One entry of `<data-dir>/services.json`: what `POST /v1/services` started, after defaults. */
const SavedServiceSchema = Type.Object(
  {
    spec: Type.Object(
      {
        type: Type.Union(SERVICE_TYPES.map((t) => Type.Literal(t))),
        ...settingsProperties(),
        controls: Type.Optional(ControlsSettingsSchema),
      },
      Strict,
    ),
    offer: OfferJsonSchema,
  },
  Strict,
);
export type SavedService = Static<typeof SavedServiceSchema>;

/**
 * The services a daemon starts again when it restarts. The daemon writes the file (atomically,
 * mode 0600); a hand-edited entry is checked like an API body, and a bad one is named and left
 * out while the others start. The file as it was is kept next to it, so nothing typed is lost
 * when the daemon next rewrites it.
 */
export class ServicesFile {
  readonly file: string;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, "services.json");
  }

  /** The valid entries, and one problem per invalid entry. Throws if the file is not a JSON list. */
  read(): { services: SavedService[]; problems: string[] } {
    let text: string;
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { services: [], problems: [] };
      throw new MystError("SERVICES_FILE_UNREADABLE", `cannot read ${this.file}`, { cause: err });
    }
    let list: unknown;
    try {
      list = JSON.parse(text);
    } catch (err) {
      throw new MystError("SERVICES_FILE_CORRUPT", `${this.file} is not JSON (${(err as Error).message}); fix or delete it`, { cause: err });
    }
    if (!Array.isArray(list)) throw new MystError("SERVICES_FILE_CORRUPT", `${this.file} is not a JSON list of services; fix or delete it`);
    const services: SavedService[] = [];
    const problems: string[] = [];
    list.forEach((entry, i) => {
      const error = Value.Errors(SavedServiceSchema, entry).First();
      if (error) problems.push(`entry ${i}${error.path ? ` at ${error.path}` : ""}: ${error.message}`);
      else services.push(entry as SavedService);
    });
    if (problems.length) fs.copyFileSync(this.file, `${this.file}.invalid`);
    return { services, problems };
  }

  write(services: SavedService[]): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(services, null, 2) + "\n", { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}
