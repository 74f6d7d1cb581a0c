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
import select, sys, time
pid, port, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
out = None
for s in udp_sockets_of(pid):
    if out is None and s.family == socket.AF_INET and s.getsockname()[1] == port:
        out = s
    else:
        s.close()
if out is None:
    sys.exit(3)
start = None
i = dropped = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    address, p, data = line.split(" ")
    if start is None:
        start = time.monotonic()
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
    if i % 16 == 0:
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # by the clock, in batches: thousands of sub-millisecond sleeps overrun
print("sent", i, "dropped", dropped)
`;

/**
 * Datagrams a second. The birthday search's first meeting comes after about 64,512 / (sockets + 1)
 * probes (about 250 against the provider's 256 sockets), so the pace is what the search's time is
 * made of: at 2,048 a second (the first pace) it took 140–215 ms of the connect. 4,096 probes now
 * take half a second: about 71 bytes each as IP, 4.7 Mbit/s of the uplink for that half second.
 */
export const SPRAY_PER_SECOND = 8192;

export type SprayDatagram = { address: string; port: number; bytes: Buffer };

/** A sender started in advance on wireguard-go's socket: `send` gives it the datagrams (once), `cancel` ends one not needed. */
export interface TunnelSprayer {
  /** Whether it is still waiting for its datagrams (not sent, not cancelled, not exited). */
  readonly ready: boolean;
  send(datagrams: Iterable<SprayDatagram>): Promise<void>;
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
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  child.stdout.resume();
  const exited = new Promise<void>((resolve, reject) => {
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new TunnelError("WIREGUARD_FAILED", `could not send from wireguard-go's port ${port} (${code}): ${err.slice(-300)}`)),
    );
  });
  exited.catch(() => undefined); // `send` reports it
  let used = false;
  return {
    get ready() {
      return !used && child.exitCode === null && child.signalCode === null;
    },
    send(datagrams) {
      if (used) return Promise.reject(new TunnelError("WIREGUARD_FAILED", "this tunnel spray was already sent or cancelled"));
      used = true;
      void streamLines(child.stdin!, datagrams);
      return exited;
    },
    cancel() {
      if (used) return;
      used = true;
      child.stdin!.end();
    },
  };
}

/** The copied socket sends in its own namespace, whichever this process is in. */
export async function sprayFromSocketOf(pid: number, port: number, datagrams: Iterable<SprayDatagram>): Promise<void> {
  await startSprayer(pid, port).send(datagrams);
}

/** Writes the datagrams in batches, yielding between them, so the first reach the sender while the rest are made. */
async function streamLines(stdin: NodeJS.WritableStream, datagrams: Iterable<SprayDatagram>): Promise<void> {
  let batch: string[] = [];
  for (const d of datagrams) {
    batch.push(`${d.address} ${d.port} ${d.bytes.toString("hex")}\n`);
    if (batch.length < 64) continue;
    stdin.write(batch.join(""));
    batch = [];
    await new Promise((r) => setImmediate(r));
  }
  stdin.end(batch.join(""));
}
