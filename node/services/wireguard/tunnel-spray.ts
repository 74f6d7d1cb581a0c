import { spawner } from "../spawner";
import { program, TunnelError } from "../system";

/**
 * Sends datagrams from wireguard-go's own UDP socket (hard-NAT probing for a consumer whose router
 * maps ports per destination, node/nat/direct): a copy of the socket is taken with pidfd_getfd(2)
 * (root may), as socket-buffer.ts does, and each datagram goes out with `send` on it, so the
 * provider's router maps the tunnel's own port toward the consumer's mappings they reach. The
 * datagrams are sealed by the node (channel keys); wireguard-go never sees them, and no tunnel
 * packet passes through this process.
 *
 * The sender is started before the datagrams are known (`startSprayer`, while the session is
 * negotiated), so its start-up and the socket's copy are paid before the provider's answer. It is
 * perl (Debian's perl: Time::HiRes is in it, not in perl-base), not python: python3's start-up took 80–220 ms of wall
 * time and 50–60 ms of CPU here (load 2.5), longer than the negotiation it ran beside, and the
 * tunnel's first probe then left 17–30 ms (p50) after the channel asked for it (docs/direct-channel.md,
 * "The spray's sender"); perl's takes under 10 ms. The datagrams stream in: each is sent as it
 * arrives, so the search's first probes leave while the last are still being sealed.
 *
 * Descriptors are listed, then read, while they change (wireguard-go accepts and closes a connection
 * for every UAPI request): one closed in between is skipped (socket-copy.ts says what happened when
 * it was not). `-e` with an emptied environment: no PERL5OPT or PERL5LIB can add code to this
 * root-run script.
 */
const SCRIPT = String.raw`
BEGIN { @INC = grep { !m{^/usr/local/} && $_ ne "." } @INC }  # root-run: only Debian's own modules (as python's -S)
use strict; use warnings;
use Socket qw(AF_INET SOCK_DGRAM SOL_SOCKET SO_TYPE inet_aton pack_sockaddr_in unpack_sockaddr_in sockaddr_family);
use Time::HiRes qw(time sleep);
use Errno qw(EAGAIN);
$| = 1;
my $rate = 0 + $ARGV[0];
my $aim = <STDIN>;  # "pid port": the sender may start before wireguard-go's socket exists
exit 0 unless defined $aim;  # cancelled before it was aimed
my ($pid, $port) = map { 0 + $_ } split " ", $aim;
my $pidfd = syscall(434, $pid, 0);  # pidfd_open
if ($pidfd < 0) { print STDERR "pidfd_open($pid): $!\n"; exit 4 }
my $out;
opendir(my $dir, "/proc/$pid/fd") or do { print STDERR "/proc/$pid/fd: $!\n"; exit 4 };
for my $name (readdir $dir) {
  next unless $name =~ /^\d+$/;
  my $link = readlink("/proc/$pid/fd/$name");
  next unless defined $link && $link =~ /^socket:/;  # closed since it was listed (a UAPI connection)
  my $fd = syscall(438, $pidfd, 0 + $name, 0);  # pidfd_getfd
  next if $fd < 0;
  open(my $s, "+<&=", $fd) or next;
  my $local = getsockname($s);
  my $type = getsockopt($s, SOL_SOCKET, SO_TYPE);
  if (!$out && defined $local && defined $type && unpack("i", $type) == SOCK_DGRAM && sockaddr_family($local) == AF_INET && (unpack_sockaddr_in($local))[0] == $port) { $out = $s } else { close $s }
}
exit 3 unless $out;
my ($i, $dropped, $first, $batch) = (0, 0, 0, undef);
sub finish { printf "sent %d dropped %d first %d\n", $i - $dropped, $dropped, $first * 1000; exit 0 }
$SIG{TERM} = \&finish;  # stopped (the tunnels met): what was sent is still told
print "ready\n";
my $period = 16 / $rate;
while (my $line = <STDIN>) {
  chomp $line;
  next if $line eq "";
  my ($address, $p, $hex) = split / /, $line;
  if ($i % 16 == 0) {
    # A cap, in batches of 16 (thousands of sub-millisecond sleeps overrun): a batch starts no sooner than one
    # period after the last one was due, so time spent waiting for datagrams earns no burst.
    my $now = time;
    sleep($batch + $period - $now) if defined $batch && $batch + $period > $now;
    $batch = !defined $batch || $now > $batch + $period ? $now : $batch + $period;
  }
  $first = time if $i == 0;
  my ($datagram, $to) = (pack("H*", $hex), pack_sockaddr_in(0 + $p, inet_aton($address)));
  if (!defined send($out, $datagram, 0, $to)) {
    # wireguard-go's socket is non-blocking (this copy shares it): a full send buffer waits, not drops.
    if ($! == EAGAIN) { my $w = ""; vec($w, fileno($out), 1) = 1; select(undef, $w, undef, 0.05); $dropped++ unless defined send($out, $datagram, 0, $to) }
    else { $dropped++ }
  }
  $i++;
}
finish();
`;

/**
 * Datagrams a second. The birthday search's first meeting comes after about 64,512 / (sockets + 1)
 * probes (about 250 against the provider's 256 sockets), so the pace is what the search's time is
 * made of: at 2,048 a second (the first pace) it took 140–215 ms of the connect. 4,096 probes now
 * take half a second: about 71 bytes each as IP, 4.7 Mbit/s of the uplink for that half second.
 */
export const SPRAY_PER_SECOND = 8192;

export type SprayDatagram = { address: string; port: number; bytes: Buffer };

/**
 * What a sender did: datagrams sent, datagrams the socket refused (a full buffer, an unreachable network), whether it
 * was stopped early, and when its first datagram left (epoch ms; the search's own time is from then).
 */
export type SprayResult = { sent: number; dropped: number; stopped: boolean; firstSentAt?: number };

/**
 * A sender started in advance on wireguard-go's socket: `found` says whether it holds the socket,
 * `send` gives it the datagrams (once), `stop` ends it early (the tunnels met), `cancel` ends one not
 * needed.
 */
export interface TunnelSprayer {
  /**
   * Resolves true once the sender holds a copy of the tunnel's socket ("ready"), false when it ended
   * before (no such socket, the sender failed): one that failed is never handed datagrams, which would
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
  const sender = launchSprayer(perSecond);
  sender.aim(pid, port);
  return sender.sprayer;
}

/**
 * Starts a sender before the socket it will send from exists (the consumer's, beside wireguard-go's own start): `aim`
 * names the process and port once they are known; until then it waits, and `sprayer.cancel()` ends it.
 */
export function launchSprayer(perSecond = SPRAY_PER_SECOND): { sprayer: TunnelSprayer; aim(pid: number, port: number): void } {
  const child = spawner.launch([program("perl", "perl"), "-e", SCRIPT, String(perSecond)], { stdin: true, background: true, env: {} });
  let port = 0;
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
        const told = /^sent (\d+) dropped (\d+) first (\d+)$/m.exec(out);
        const firstSentAt = Number(told?.[3] ?? 0) || undefined;
        if (code === 0 || stopped) resolve({ sent: Number(told?.[1] ?? 0), dropped: Number(told?.[2] ?? 0), stopped, ...(firstSentAt ? { firstSentAt } : {}) });
        else {
          const why = code === 3 ? `wireguard-go holds no IPv4 UDP socket on port ${port}` : `${code ?? signal}: ${err.trim().slice(0, 300)}`;
          reject(new TunnelError("WIREGUARD_FAILED", `could not send from wireguard-go's port ${port} (${why})`));
        }
      });
    });
  });
  exited.catch(() => undefined); // `send` reports it
  const ended = () => child.exitCode !== null || child.signalCode !== null;
  const sprayer: TunnelSprayer = {
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
  const aim = (pid: number, at: number) => {
    port = at;
    child.stdin!.write(`${pid} ${at}\n`);
  };
  return { sprayer, aim };
}

/** A sender started now and aimed at `device`'s socket once it is up (on `port()`); undefined, and ended, when it failed. */
export function sprayerForDevice(device: Promise<{ pid?: number }>, port: () => number): Promise<TunnelSprayer | undefined> {
  let early: ReturnType<typeof launchSprayer>;
  try {
    early = launchSprayer();
  } catch {
    // perl missing: no early sender; the spray's own start then fails with the reason, and the connect with it (never here, in `prepare`).
    return device.then(
      () => undefined,
      () => undefined,
    );
  }
  const unused = () => void early.sprayer.cancel();
  return device.then((process) => {
    if (!process.pid) return unused();
    early.aim(process.pid, port());
    return early.sprayer;
  }, unused);
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
