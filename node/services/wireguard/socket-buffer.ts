import { spawner } from "../spawner";
import { program } from "../system";
import { COPY_UDP_SOCKETS_PY } from "./socket-copy";

/**
 * The UDP receive buffer wireguard-go's sockets get, as OpenVPN's `rcvbuf 2097152` (capped by
 * net.core.rmem_max). Debian's wireguard-go (0.0.20220316) leaves the 208 KiB default, and a fast
 * download then loses about 10% of its datagrams at the consumer's socket (measured: 708 of 6,500
 * for 8 MB): the provider bills bytes the consumer never received. wireguard-go has no option for
 * it and net.core.rmem_default is not per namespace, so the buffer is set from outside: a copy of
 * each of its UDP sockets is taken with pidfd_getfd(2) (root may) and SO_RCVBUF set on it.
 */
export const RECEIVE_BUFFER = 2 * 1024 * 1024;

const SCRIPT = `${COPY_UDP_SOCKETS_PY}
import sys
pid, size = int(sys.argv[1]), int(sys.argv[2])
done = 0
for s in udp_sockets_of(pid):
    try:
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
