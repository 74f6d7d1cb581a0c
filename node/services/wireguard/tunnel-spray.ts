import { spawn } from "node:child_process";
import { program, TunnelError } from "../system";
import { COPY_UDP_SOCKETS_PY } from "./socket-copy";

/**
 * Sends datagrams from wireguard-go's own UDP socket (hard-NAT probing for a consumer whose router
 * maps ports per destination, node/nat/direct): a copy of the socket is taken with pidfd_getfd(2)
 * (root may; socket-copy.ts), as socket-buffer.ts does, and each datagram goes out with `sendto` on it, so the
 * provider's router maps the tunnel's own port toward the consumer's mappings they reach. The
 * datagrams are sealed by the node (channel keys); wireguard-go never sees them, and no tunnel
 * packet passes through this process. Paced at about 2,048 a second (4,096 over two seconds).
 *
 * The datagrams stream in: the sender starts (python's start-up, the socket's copy) while the first
 * are still being sealed, and sends each as it arrives, so the search's first probes leave without
 * waiting for all of them (sealing 4,096 took 34–87 ms here, python's start-up tens more).
 */
const SCRIPT = `${COPY_UDP_SOCKETS_PY}
import sys, time
pid, port = int(sys.argv[1]), int(sys.argv[2])
out = None
for s in udp_sockets_of(pid):
    if out is None and s.family == socket.AF_INET and s.getsockname()[1] == port:
        out = s
    else:
        s.close()
if out is None:
    sys.exit(3)
pace = 2.0 / 4096
i = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    address, p, data = line.split(" ")
    try:
        out.sendto(bytes.fromhex(data), (address, int(p)))
    except OSError:
        pass
    i += 1
    if i % 32 == 0:
        time.sleep(pace * 32)  # in batches: thousands of sub-millisecond sleeps overrun the two seconds
print("sent")
`;

/** The copied socket sends in its own namespace, whichever this process is in. */
export async function sprayFromSocketOf(pid: number, port: number, datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(program("python3", "python3"), ["-I", "-S", "-u", "-c", SCRIPT, String(pid), String(port)], { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new TunnelError("WIREGUARD_FAILED", `could not send from wireguard-go's port ${port} (${code}): ${err.slice(-300)}`)),
    );
    child.stdin.on("error", () => undefined); // the sender gave up (its exit says why)
    void streamLines(child.stdin, datagrams);
  });
}

/** Writes the datagrams in batches, yielding between them, so the first reach the sender while the rest are made. */
async function streamLines(stdin: NodeJS.WritableStream, datagrams: Iterable<{ address: string; port: number; bytes: Buffer }>): Promise<void> {
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
