import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { connect } from "nats";
import { authOptions } from "../../node/broker/broker";
import type { BrokerCredentials } from "../../node/config/broker-credentials";
import { freePort, stopChild } from "./local-chain";
import { waitForOutput } from "./until";

/**
 * Who may do what on the broker (docs/security.md): the same three users on every server these
 * helpers start. A client without credentials is `myst-node` (`no_auth_user`), which is what
 * every provider and consumer is; discovery replicas log in as `myst-discovery`; `myst-admin`
 * (tests and tools: JetStream set-up checks, an eavesdropper on `>`) may do anything.
 */
export const BROKER_USERS = { node: "myst-node", replica: "myst-discovery", admin: "myst-admin" } as const;

/** What a node needs and nothing more: announce, talk in dialogs, hear its dialogs and its requests' answers. */
export const NODE_PERMISSIONS = {
  publish: {
    allow: ["myst.discovery.register", "myst.discovery.ping", "myst.discovery.unregister", "myst.discovery.receipt", "myst.dialog.*", "myst.inbox.*"],
  },
  subscribe: { allow: ["myst.dialog.*", "myst.inbox.*", "_INBOX.>"] },
  // Answers go to the reply subject of a message it received, once, and nowhere else.
  allow_responses: true,
};

/**
 * A discovery replica: hear announcements, keep the index in JetStream, answer. Nothing else ($SYS, dialogs).
 * It answers on `_INBOX.>` (requesters' reply subjects), not through `allow_responses`: with that
 * option nats-server 2.9 keeps a response permission for every message the replica receives with a
 * reply subject, and every value JetStream delivers has one (its ack subject), which made loading
 * the bucket 10-40 times slower (100k values: about 100 s instead of 2).
 */
export const REPLICA_PERMISSIONS = {
  publish: { allow: ["myst.discovery.>", "myst.receipts.>", "$JS.API.>", "$KV.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"] },
  subscribe: { allow: ["myst.discovery.>", "_INBOX.>"] },
};

/** One password per user for this process's servers (so a test can hand the replica's to `myst discovery`). */
// Each starts with a letter: nats.js takes the port from the first ":<digits>" of a URL, so a
// password starting with a digit in a `user:pass@host:port` URL (the broker-access test puts one
// there to show nats.js ignores it) would be read as the port (seen once: CONNECTION_REFUSED).
const password = () => `p${crypto.randomBytes(18).toString("base64url")}`;
const PASSWORDS = { node: password(), replica: password(), admin: password() };

const leftovers = new Set<string>();
process.once("exit", () => {
  for (const dir of leftovers) fs.rmSync(dir, { recursive: true, force: true });
});

/** The discovery replica's credential on every server this process starts. */
export const REPLICA_CREDENTIALS: BrokerCredentials = { kind: "password", user: BROKER_USERS.replica, pass: PASSWORDS.replica };
/** The administrator's credential (everything allowed) on every server this process starts. */
export const ADMIN_CREDENTIALS: BrokerCredentials = { kind: "password", user: BROKER_USERS.admin, pass: PASSWORDS.admin };

let replicaPasswordFile: string | undefined;
/** The environment that makes a `myst discovery` process log in as the replica (a 0600 password file). */
export function replicaEnv(): { MYST_BROKER_USER: string; MYST_BROKER_PASSWORD_FILE: string } {
  if (!replicaPasswordFile) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "myst-nats-cred-"));
    leftovers.add(dir);
    replicaPasswordFile = path.join(dir, "replica.password");
    fs.writeFileSync(replicaPasswordFile, PASSWORDS.replica + "\n", { mode: 0o600 });
  }
  return { MYST_BROKER_USER: BROKER_USERS.replica, MYST_BROKER_PASSWORD_FILE: replicaPasswordFile };
}

/** The `authorization` block and `no_auth_user` line of a server's config; `replicaNkeys`: more replicas, by public nkey. */
export function authorizationConfig(replicaNkeys: string[] = []): string[] {
  const users: object[] = [
    { user: BROKER_USERS.node, password: PASSWORDS.node, permissions: NODE_PERMISSIONS },
    { user: BROKER_USERS.replica, password: PASSWORDS.replica, permissions: REPLICA_PERMISSIONS },
    { user: BROKER_USERS.admin, password: PASSWORDS.admin },
    ...replicaNkeys.map((nkey) => ({ nkey, permissions: REPLICA_PERMISSIONS })),
  ];
  return [`authorization { users: ${JSON.stringify(users)} }`, `no_auth_user: ${JSON.stringify(BROKER_USERS.node)}`];
}

export interface NatsServer {
  url: string;
  port: number;
  /**
   * Where other servers join this one: the route port of a cluster member (startNatsCluster), the
   * leaf-node port of a standalone server (nats-server 2.9 runs JetStream either standalone or in a
   * cluster with configured routes, never a cluster of one; a standalone server is extended by leaf nodes).
   */
  clusterPort: number;
  /** The HTTP monitoring endpoints' loopback port (/connz, /subsz, /jsz), with `monitor: true`. */
  monitorPort?: number;
  /** JetStream's store directory (temporary; removed by stop()). Unset for a leaf node. */
  storeDir?: string;
  pid: number;
  /** Stops the process and removes its temporary store directory (unless `keepStore`). */
  stop(options?: { keepStore?: boolean }): Promise<void>;
  /** Starts it again on the same ports and store directory (after stop). */
  restart(): Promise<void>;
}

export interface NatsServerOptions {
  /**
   * Other servers' `clusterPort`s to join. A server started with routes (and no `cluster`) is a
   * leaf node of those standalone servers, without JetStream of its own: its clients reach the
   * same subjects and the same JetStream.
   */
  routes?: number[];
  /** Serve the HTTP monitoring endpoints (/connz, /subsz, /jsz) on a loopback port (`monitorPort`). */
  monitor?: boolean;
  /** JetStream (with a temporary store directory). Default true, except for a leaf node. */
  jetstream?: boolean;
  /** Public user nkeys (`U…`) that log in as discovery replicas, besides the `myst-discovery` password user. */
  replicaNkeys?: string[];
  /** Member of a JetStream cluster: its name in the cluster, its route port and every member's (its own included). */
  cluster?: { serverName: string; routePort: number; routePorts: number[] };
}

export const NATS_SERVER_BIN = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => fs.existsSync(p));

/** The ports a server listens on; 0 for one nats-server chooses itself (its `-1`). */
interface Ports {
  client: number;
  /** The route port of a cluster member, the leaf-node port otherwise. */
  cluster: number;
  monitor?: number;
}

/**
 * Starts a real nats-server on 127.0.0.1, with JetStream in a temporary store directory.
 *
 * The server binds its own client, leaf-node and monitoring ports (`-1`) and this reads back which
 * from its log: a port chosen here and then bound by the server could be taken in between (CI
 * failed once on "nats-server exited with 1": the kernel had handed the same free port out twice,
 * for its client and its leaf-node port). A cluster member's route port is chosen here (every
 * member names the others'); the server's own error is in the message if it cannot bind it.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  if (!NATS_SERVER_BIN) throw new Error("nats-server is not installed (run scripts/install.sh)");
  const leaf = !options.cluster && (options.routes?.length ?? 0) > 0;
  const jetstream = options.jetstream ?? !leaf;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "myst-nats-"));
  leftovers.add(home);
  const storeDir = jetstream ? path.join(home, "jetstream") : undefined;
  const serverName = options.cluster?.serverName ?? `myst-${path.basename(home).slice("myst-nats-".length)}`;
  const configFile = path.join(home, "nats.conf");

  const config = (ports: Ports): string => {
    const listen = (port: number) => JSON.stringify(`127.0.0.1:${port || -1}`);
    const lines = [`listen: ${listen(ports.client)}`, `server_name: ${JSON.stringify(serverName)}`];
    lines.push(...authorizationConfig(options.replicaNkeys));
    if (ports.monitor !== undefined) lines.push(`http: ${listen(ports.monitor)}`);
    if (storeDir) lines.push(`jetstream { store_dir: ${JSON.stringify(storeDir)} }`);
    if (options.cluster) {
      const routes = options.cluster.routePorts.filter((p) => p !== ports.cluster).map((p) => JSON.stringify(`nats://127.0.0.1:${p}`));
      lines.push(`cluster { name: "myst", listen: ${listen(ports.cluster)}, routes: [${routes.join(", ")}] }`);
    } else if (leaf) {
      const remotes = options.routes!.map((p) => `{ url: ${JSON.stringify(`nats://127.0.0.1:${p}`)} }`);
      lines.push(`leafnodes { listen: ${listen(ports.cluster)}, remotes: [${remotes.join(", ")}] }`);
    } else {
      lines.push(`leafnodes { listen: ${listen(ports.cluster)} }`);
    }
    return lines.join("\n") + "\n";
  };

  let ports: Ports = { client: 0, cluster: options.cluster?.routePort ?? 0, monitor: options.monitor ? 0 : undefined };
  let child: ChildProcess;
  const launch = async () => {
    fs.mkdirSync(home, { recursive: true });
    leftovers.add(home);
    fs.writeFileSync(configFile, config(ports));
    child = spawn(NATS_SERVER_BIN!, ["-c", configFile], { stdio: ["ignore", "ignore", "pipe"] });
    try {
      ports = await listening(child, ports, { member: !!options.cluster, timeoutMs: 10_000 });
    } catch (err) {
      await stopChild(child);
      throw err;
    }
  };
  await launch();
  return {
    url: `nats://127.0.0.1:${ports.client}`,
    port: ports.client,
    clusterPort: ports.cluster,
    monitorPort: ports.monitor,
    storeDir,
    get pid() {
      return child.pid!;
    },
    stop: async ({ keepStore = false } = {}) => {
      await stopChild(child);
      if (!keepStore) {
        fs.rmSync(home, { recursive: true, force: true });
        leftovers.delete(home);
      }
    },
    // On the ports it has: its clients reconnect to the same URL.
    restart: launch,
  };
}

/** The lines of nats-server 2.9's log that name a port it listens on, by which of `Ports` it is. */
const LISTENING: [keyof Ports, RegExp][] = [
  ["client", /Listening for client connections on 127\.0\.0\.1:(\d+)/],
  ["cluster", /Listening for (?:route|leafnode) connections on 127\.0\.0\.1:(\d+)/],
  ["monitor", /Starting http monitor on 127\.0\.0\.1:(\d+)/],
];

/**
 * The ports `child` listens on once it logs "Server is ready" (its client, leaf-node and monitoring
 * listeners are open then) and, for a cluster `member`, that it listens for routes (a line that
 * comes after: a route port it cannot bind makes it exit then): those of `wanted` that are 0 read
 * from its log. Rejects with the end of its log if it exits first or is not ready within `timeoutMs`.
 */
async function listening(child: ChildProcess, wanted: Ports, o: { member: boolean; timeoutMs: number }): Promise<Ports> {
  const ready = (log: string) => /\[INF\] Server is ready/.test(log) && (!o.member || /Listening for route connections on/.test(log));
  const log = await waitForOutput(child, "nats-server", ready, o.timeoutMs);
  const found = { ...wanted };
  for (const [which, line] of LISTENING) {
    if (wanted[which] !== 0) continue;
    const port = Number(line.exec(log)?.[1]);
    if (!port) throw new Error(`nats-server is ready but its log names no ${which} port; its log:\n${log}`);
    found[which] = port;
  }
  return found;
}

/**
 * Starts `size` JetStream servers on loopback that route to each other (cluster "myst"), and
 * waits until JetStream has a meta leader (a few seconds: the servers elect one).
 */
export async function startNatsCluster(size = 3): Promise<NatsServer[]> {
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const started = await Promise.allSettled(
    routePorts.map((routePort, i) => startNatsServer({ cluster: { serverName: `myst-${i + 1}`, routePort, routePorts } })),
  );
  const servers = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    await Promise.all(servers.map((s) => s.stop()));
    throw failed.reason;
  }
  try {
    await waitForJetStream(servers.map((s) => s.url));
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  return servers;
}

/** Resolves once JetStream answers account info through `servers` (a cluster elects its meta leader first). */
export async function waitForJetStream(servers: string[], timeoutMs = 30_000): Promise<void> {
  const nc = await connect({ servers, ...authOptions(ADMIN_CREDENTIALS) });
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const jsm = await nc.jetstreamManager({ timeout: 1000 });
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`JetStream not ready within ${timeoutMs} ms: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } finally {
    await nc.close();
  }
}
