/**
 * Python (run by socket-buffer.ts; tunnel-spray.ts's perl sender does the same) that takes copies of another
 * process's UDP sockets with pidfd_getfd(2) (root may): `udp_sockets_of(pid)` yields each as a socket object.
 *
 * The process's descriptors change while they are listed: wireguard-go accepts a connection on its
 * control socket for every UAPI request (the consumer asks it every few ms whether the provider's
 * handshake came: every 1 ms for the first 50 ms, then every 5) and closes it after. A descriptor listed and closed before it is read is skipped.
 * Not skipped, `os.readlink` raised FileNotFoundError and the tunnel's spray never left: the
 * provider's probing sockets waited in vain and the connect failed after the 10 s handshake wait
 * (docs/direct-channel.md, "A handshake that never came").
 */
export const COPY_UDP_SOCKETS_PY = `
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)

def udp_sockets_of(pid):
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue  # closed since it was listed (a UAPI connection)
            fd = libc.syscall(438, pidfd, int(name), 0)  # pidfd_getfd
            if fd < 0:
                continue
            try:
                s = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)
                continue
            if s.type == socket.SOCK_DGRAM and s.family in (socket.AF_INET, socket.AF_INET6):
                yield s
            else:
                s.close()
    finally:
        os.close(pidfd)
`;
