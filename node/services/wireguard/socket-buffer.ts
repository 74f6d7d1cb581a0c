import { spawner } from "../spawner";
import { program } from "../system";

/**
 * The UDP receive buffer wireguard-go's sockets get, as OpenVPN's `rcvbuf 2097152` (capped by
 * net.core.rmem_max). Debian's wireguard-go (0.0.20220316) leaves the 208 KiB default, and a fast
 * download then loses about 10% of its datagrams at the consumer's socket (measured: 708 of 6,500
 * for 8 MB): the provider bills bytes the consumer never received. wireguard-go has no option for
 * it and net.core.rmem_default is not per namespace, so the buffer is set from outside: a copy of
 * each of its UDP sockets is taken with pidfd_getfd(2) (root may) and SO_RCVBUF set on it.
 */
export const RECEIVE_BUFFER = 2 * 1024 * 1024;

const SCRIPT = `
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
pid, size = int(sys.argv[1]), int(sys.argv[2])
pidfd = os.pidfd_open(pid)
done = 0
for name in os.listdir(f"/proc/{pid}/fd"):
    if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
        continue
    fd = libc.syscall(438, pidfd, int(name), 0)  # pidfd_getfd
    if fd < 0:
        continue
    s = socket.socket(fileno=fd)
    try:
        if s.type == socket.SOCK_DGRAM and s.family in (socket.AF_INET, socket.AF_INET6):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            done += 1
    finally:
        s.close()
print(done)
`;

/** Sets SO_RCVBUF on every UDP socket of process `pid`; resolves with how many it set. */
export async function enlargeReceiveBuffers(pid: number, bytes = RECEIVE_BUFFER): Promise<number> {
  // From the spawning helper: python3 is started while a tunnel is being set up, and a fork of the node would stop its event loop.
  const out = await spawner.run([program("python3", "python3"), "-c", SCRIPT, String(pid), String(bytes)]);
  return Number(out.trim());
}
