import { type RemoteChild, spawner } from "../spawner";
import { inNetns, program } from "../system";

/**
 * Drops the host's conntrack entry of one UDP flow, the punch route's (punch-route.ts), with no
 * process start on the connect path: a warm python process in the provider's namespace, started as
 * the search starts, sends ctnetlink IPCTNL_MSG_CT_DELETE for the flow between the consumer's tunnel
 * (address · port) and the probing socket's port, in both directions, from each of the host's own
 * IPv4 addresses (the probing socket is bound to all of them). Two `conntrack -D` process starts
 * took 30–60 ms of the connect on a quiet machine and 150–240 ms loaded; a datagram to this process
 * and its answer take a millisecond or two. An entry not there is no error (ENOENT); any other
 * error, a process that ended, or no answer within `ANSWER_MS` is reported, and the caller falls back
 * to `conntrack -D`.
 */
const SCRIPT = `
import fcntl, socket, struct, sys
NESTED = 0x8000

def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\\0" * ((4 - n % 4) % 4)

def udp_tuple(src, sport, dst, dport):
    ip = attr(1 | NESTED, attr(1, socket.inet_aton(src)) + attr(2, socket.inet_aton(dst)))
    proto = attr(2 | NESTED, attr(1, bytes([17])) + attr(2, struct.pack("!H", sport)) + attr(3, struct.pack("!H", dport)))
    return attr(1 | NESTED, ip + proto)  # CTA_TUPLE_ORIG: the kernel finds the entry by either direction's tuple

def own_addresses():
    out = []
    for _, name in socket.if_nameindex():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            ifr = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            out.append(socket.inet_ntoa(ifr[20:24]))
        except OSError:
            pass  # no IPv4 address
        finally:
            s.close()
    return [a for a in out if not a.startswith("127.")]

nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
nl.bind((0, 0))
seq = 0

def delete(t):
    global seq
    seq += 1
    body = struct.pack("=BBH", socket.AF_INET, 0, 0) + t
    nl.send(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2, 1 | 4, seq, 0) + body)  # CTNETLINK, CT_DELETE, REQUEST|ACK
    while True:
        data = nl.recv(65536)
        at = 0
        while at + 16 <= len(data):
            n, kind, _, s, _ = struct.unpack_from("=IHHII", data, at)
            if kind == 2 and s == seq:  # NLMSG_ERROR: 0, or -errno
                return -struct.unpack_from("=i", data, at + 16)[0]
            at += max(16, (n + 3) & ~3)

for line in sys.stdin:
    parts = line.split()
    if len(parts) != 3:
        print("error bad request", flush=True)
        continue
    remote, rport, lport = parts[0], int(parts[1]), int(parts[2])
    dropped, errors = 0, []
    for local in own_addresses():
        for t in (udp_tuple(local, lport, remote, rport), udp_tuple(remote, rport, local, lport)):
            err = delete(t)
            if err == 0:
                dropped += 1
            elif err != 2:  # ENOENT: no such flow
                errors.append(str(err))
    print(f"error errno {' '.join(errors)}" if errors else f"dropped {dropped}", flush=True)
`;

/** How long an answer may take before the caller falls back to `conntrack -D`. */
const ANSWER_MS = 2000;

export class ConntrackForgetter {
  readonly #child: RemoteChild;
  readonly #waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  #out = "";
  #ended = false;

  constructor(readonly netns?: string) {
    this.#child = spawner.launch(inNetns(netns, [program("python3", "python3"), "-I", "-S", "-u", "-c", SCRIPT]), { stdin: true, background: true });
    let err = "";
    this.#child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    this.#child.stdout.setEncoding("utf8").on("data", (d: string) => {
      this.#out += d;
      for (let nl = this.#out.indexOf("\n"); nl >= 0; nl = this.#out.indexOf("\n")) {
        const line = this.#out.slice(0, nl);
        this.#out = this.#out.slice(nl + 1);
        this.#waiting.shift()?.resolve(line);
      }
    });
    this.#child.stdin!.on("error", () => undefined); // it ended: its exit says why
    this.#child.once("exit", () => {
      this.#ended = true;
      for (const w of this.#waiting.splice(0)) w.reject(new Error(`the conntrack forgetter ended: ${err.trim().slice(-300)}`));
    });
  }

  get usable(): boolean {
    return !this.#ended;
  }

  /**
   * Drops the flow between `remote`·`remotePort` and our `localPort` (either direction); resolves
   * with how many entries went (0: there was none), rejects when that could not be done.
   */
  forget(remote: string, remotePort: number, localPort: number): Promise<number> {
    if (this.#ended) return Promise.reject(new Error("the conntrack forgetter ended"));
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late answer would be taken for the next request's: this process is done.
        // A process stuck in a netlink read would never see its input end: it is killed.
        this.end();
        reject(new Error(`the conntrack forgetter did not answer within ${ANSWER_MS} ms`));
      }, ANSWER_MS);
      this.#waiting.push({
        resolve: (line) => {
          clearTimeout(timer);
          const m = /^dropped (\d+)$/.exec(line);
          if (m) resolve(Number(m[1]));
          else reject(new Error(`the conntrack forgetter: ${line}`));
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.#child.stdin!.write(`${remote} ${remotePort} ${localPort}\n`);
    });
  }

  /** Ends the process: its input closes, and it is killed if it has not gone a second later (stuck in a netlink read). */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#child.stdin!.end();
    setTimeout(() => {
      if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill("SIGKILL");
    }, 1000).unref();
  }
}
