import { spawner } from "../spawner";
import { program, TunnelError } from "../system";
import { COPY_UDP_SOCKETS_PY } from "./socket-copy";

/**
 * Sends datagrams from wireguard-go's own UDP socket (hard-NAT probing for a consumer whose router
 * maps ports per destination, node/nat/direct): a copy of the socket is taken with pidfd_getfd(2)
 * (root may; socket-copy.ts), as socket-buffer.ts does, and each datagram goes out with `sendto` on it, so the
 * provider's router maps the tunnel's own port toward the consumer's mappings they reach. The
 * datagrams are sealed by the node (channel keys); wireguard-go never sees them, and no tunnel
 * packet passes through this process.
 *
 * The sender can be started before the datagrams are known (`startSprayer`, while the session is
 * negotiated): python's start-up (0.2 s at a load of 6, measured) and the socket's copy are then
 * paid before the provider's answer, not after it. The datagrams stream in: each is sent as it
 * arrives, so the search's first probes leave while the last are still being sealed.
 */
const SCRIPT = `${COPY_UDP_SOCKETS_PY}
import select, signal, sys, time
pid, port, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
out = None
for s in udp_sockets_of(pid):
    if out is None and s.family == socket.AF_INET and s.getsockname()[1] == port:
        out = s
    else:
        s.close()
if out is None:
    sys.exit(3)
i = dropped = 0

def finish(*_):
    print("sent", i - dropped, "dropped", dropped, flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, finish)  # stopped (the tunnels met): what was sent is still told
print("ready", flush=True)
period = 16 / rate
batch = None
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    address, p, data = line.split(" ")
    if i % 16 == 0:
        # A cap, in batches of 16 (thousands of sub-millisecond sleeps overrun): a batch starts no
        # sooner than one period after the last one was due, so time spent waiting for datagrams
        # earns no burst (paced as an average, the datagrams that came late all left at once).
        now = time.monotonic()
        if batch is not None and batch + period > now:
            time.sleep(batch + period - now)
        batch = now if batch is None else max(now, batch + period)
    datagram, to = bytes.fromhex(data), (address, int(p))
    try:
        out.sendto(datagram, to)
    except BlockingIOError:
        # wireguard-go's socket is non-blocking (this copy shares it): a full send buffer waits, not drops.
        select.select([], [out], [], 0.05)
        try:
            out.sendto(datagram, to)
        except OSError:
            dropped += 1
    except OSError:
        dropped += 1
    i += 1
finish()
`;

/**
 * Datagrams a second. The birthday search's first meeting comes after about 64,512 / (sockets + 1)
 * probes (about 250 against the provider's 256 sockets), so the pace is what the search's time is
 * made of: at 2,048 a second (the first pace) it took 140–215 ms of the connect. 4,096 probes now
 * take half a second: about 71 bytes each as IP, 4.7 Mbit/s of the uplink for that half second.
 */
export const SPRAY_PER_SECOND = 8192;

export type SprayDatagram = { address: string; port: number; bytes: Buffer };

/** What a sender did: datagrams sent, datagrams the socket refused (a full buffer, an unreachable network), and whether it was stopped early. */
export type SprayResult = { sent: number; dropped: number; stopped: boolean };

/**
 * A sender started in advance on wireguard-go's socket: `found` says whether it holds the socket,
 * `send` gives it the datagrams (once), `stop` ends it early (the tunnels met), `cancel` ends one not
 * needed.
 */
export interface TunnelSprayer {
  /**
   * Resolves true once the sender holds a copy of the tunnel's socket ("ready"), false when it ended
   * before (no such socket, python failed): one that failed is never handed datagrams, which would
   * be lost (review finding 3).
   */
  readonly found: Promise<boolean>;
  /** Whether it can take its datagrams now: it found the socket, and was not given any, cancelled, stopped or ended. */
  readonly ready: boolean;
  /** Resolves with what was sent once the last datagram left (or it was stopped); rejects when the sender failed. */
  send(datagrams: Iterable<SprayDatagram>): Promise<SprayResult>;
  /** Ends the sender now: datagrams not yet sent are not (`send` resolves with `stopped`). */
  stop(): void;
  cancel(): void;
}

/**
 * Starts the sender on the UDP socket of process `pid` bound to `port` (wireguard-go's, once its
 * listen port is set), in that process's namespace, from the spawning helper (no fork of the node).
 */
export function startSprayer(pid: number, port: number, perSecond = SPRAY_PER_SECOND): TunnelSprayer {
  const child = spawner.launch([program("python3", "python3"), "-I", "-S", "-u", "-c", SCRIPT, String(pid), String(port), String(perSecond)], {
    stdin: true,
    background: true,
  });
  let err = "";
  let out = "";
  let holds = false;
  let used = false;
  let stopped = false;
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  let said: (found: boolean) => void = () => undefined;
  const found = new Promise<boolean>((resolve) => (said = resolve));
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d;
    if (!holds && /^ready$/m.test(out)) said((holds = true));
  });
  const outEnded = new Promise<void>((resolve) => child.stdout.once("end", resolve));
  const exited = new Promise<SprayResult>((resolve, reject) => {
    child.once("exit", (code, signal) => {
      void outEnded.then(() => {
        said(holds);
        const told = /^sent (\d+) dropped (\d+)$/m.exec(out);
        if (code === 0 || stopped) resolve({ sent: Number(told?.[1] ?? 0), dropped: Number(told?.[2] ?? 0), stopped });
        else {
          const why = code === 3 ? `wireguard-go holds no IPv4 UDP socket on port ${port}` : `${code ?? signal}: ${err.trim().slice(-300)}`;
          reject(new TunnelError("WIREGUARD_FAILED", `could not send from wireguard-go's port ${port} (${why})`));
        }
      });
    });
  });
  exited.catch(() => undefined); // `send` reports it
  const ended = () => child.exitCode !== null || child.signalCode !== null;
  return {
    found,
    get ready() {
      return holds && !used && !ended();
    },
    send(datagrams) {
      if (used) return Promise.reject(new TunnelError("WIREGUARD_FAILED", "this tunnel spray was already sent or cancelled"));
      used = true;
      void streamLines(child.stdin!, datagrams, () => stopped || ended());
      return exited;
    },
    stop() {
      used = true;
      if (stopped || ended()) return;
      stopped = true;
      child.kill("SIGTERM");
    },
    cancel() {
      if (used) return;
      used = true;
      child.stdin!.end();
    },
  };
}

/**
 * The sender to give the datagrams to: the one started in advance once it said it holds the socket,
 * otherwise (it failed, or ended) a fresh one. A sender that failed is never handed datagrams: its
 * exit may not have been seen yet, and they would be lost (the connect then waited out the handshake).
 */
export async function sprayerFor(early: TunnelSprayer | undefined, start: () => TunnelSprayer): Promise<TunnelSprayer> {
  if (early && (await early.found) && early.ready) return early;
  early?.cancel();
  return start();
}

/** The copied socket sends in its own namespace, whichever this process is in. */
export async function sprayFromSocketOf(pid: number, port: number, datagrams: Iterable<SprayDatagram>): Promise<SprayResult> {
  return startSprayer(pid, port).send(datagrams);
}

/** Writes the datagrams in batches, yielding between them, so the first reach the sender while the rest are made; no more once it is `done`. */
async function streamLines(stdin: NodeJS.WritableStream, datagrams: Iterable<SprayDatagram>, done: () => boolean): Promise<void> {
  let batch: string[] = [];
  for (const d of datagrams) {
    batch.push(`${d.address} ${d.port} ${d.bytes.toString("hex")}\n`);
    if (batch.length < 64) continue;
    if (done()) break;
    stdin.write(batch.join(""));
    batch = [];
    await new Promise((r) => setImmediate(r));
  }
  stdin.end(done() ? "" : batch.join(""));
}
