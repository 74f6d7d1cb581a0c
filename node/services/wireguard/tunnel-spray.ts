import { spawn } from "node:child_process";
import { program, TunnelError } from "../system";

/**
 * Sends datagrams from wireguard-go's own UDP socket (hard-NAT probing for a consumer whose router
 * maps ports per destination, node/nat/direct): a copy of the socket is taken with pidfd_getfd(2)
 * (root may), as socket-buffer.ts does, and each datagram goes out with `sendto` on it, so the
 * provider's router maps the tunnel's own port toward the consumer's mappings they reach. The
 * datagrams are sealed by the node (channel keys); wireguard-go never sees them, and no tunnel
 * packet passes through this process. Paced over about two seconds.
 */
const SCRIPT = `
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
pid, port = int(sys.argv[1]), int(sys.argv[2])
pidfd = os.pidfd_open(pid)
out = None
for name in os.listdir(f"/proc/{pid}/fd"):
    if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
        continue
    fd = libc.syscall(438, pidfd, int(name), 0)  # pidfd_getfd
    if fd < 0:
        continue
    s = socket.socket(fileno=fd)
    if out is None and s.type == socket.SOCK_DGRAM and s.family == socket.AF_INET and s.getsockname()[1] == port:
        out = s
    else:
        s.close()
if out is None:
    sys.exit(3)
lines = sys.stdin.read().split("\\n")
pace = 2.0 / max(1, len(lines))
for i, line in enumerate(lines):
    if not line:
        continue
    address, p, data = line.split(" ")
    try:
        out.sendto(bytes.fromhex(data), (address, int(p)))
    except OSError:
        pass
    if i % 32 == 31:
        time.sleep(pace * 32)  # in batches: thousands of sub-millisecond sleeps overrun the two seconds
print("sent")
`;

/** The copied socket sends in its own namespace, whichever this process is in. */
export async function sprayFromSocketOf(pid: number, port: number, datagrams: { address: string; port: number; bytes: Buffer }[]): Promise<void> {
  const input = datagrams.map((d) => `${d.address} ${d.port} ${d.bytes.toString("hex")}`).join("\n");
  await new Promise<void>((resolve, reject) => {
    const child = spawn(program("python3", "python3"), ["-c", SCRIPT, String(pid), String(port)], { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve() : reject(new TunnelError("WIREGUARD_FAILED", `could not send from wireguard-go's port ${port} (${code}): ${err.slice(-300)}`)),
    );
    child.stdin.end(input);
  });
}
