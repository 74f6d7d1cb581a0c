/** How a command prints: human lines, or one JSON document with --json. */
export interface Output {
  json: boolean;
  /** Prints `data` as JSON with --json, else the human lines. */
  result(data: unknown, human: () => string[]): void;
  /** A note for people (stderr), silent with --json. */
  note(line: string): void;
}

export function makeOutput(json: boolean): Output {
  return {
    json,
    result(data, human) {
      if (json) process.stdout.write(JSON.stringify(data, replacer, 2) + "\n");
      else for (const line of human()) process.stdout.write(line + "\n");
    },
    note(line) {
      if (!json) process.stderr.write(line + "\n");
    },
  };
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return "0x" + Buffer.from(value).toString("hex");
  return value;
}
