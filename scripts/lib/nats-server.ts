import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { connect } from "nats";
import { authOptions } from "../../node/broker/broker";
import type { BrokerCredentials } from "../../node/config/broker-credentials";
import { freePort, stopChild } from "./local-chain";

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
  /** Reuse these ports (e.g. to restart). */
  port?: number;
  clusterPort?: number;
  /** Serve the HTTP monitoring endpoints (/connz, /subsz, /jsz) on this loopback port. */
  monitorPort?: number;
  /** JetStream (with a temporary store directory). Default true, except for a leaf node. */
  jetstream?: boolean;
  /** Public user nkeys (`U…`) that log in as discovery replicas, besides the `myst-discovery` password user. */
  replicaNkeys?: string[];
  /** Member of a JetStream cluster: its name in the cluster and every member's route port (its own included). */
  cluster?: { serverName: string; routePorts: number[] };
}

export const NATS_SERVER_BIN = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => fs.existsSync(p));

/** Starts a real nats-server on 127.0.0.1, with JetStream in a temporary store directory. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  if (!NATS_SERVER_BIN) throw new Error("nats-server is not installed (run scripts/install.sh)");
  const port = options.port ?? (await freePort());
  const clusterPort = options.clusterPort ?? (await freePort());
  const leaf = !options.cluster && (options.routes?.length ?? 0) > 0;
  const jetstream = options.jetstream ?? !leaf;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "myst-nats-"));
  leftovers.add(home);
  const storeDir = jetstream ? path.join(home, "jetstream") : undefined;
  const lines = [`listen: "127.0.0.1:${port}"`, `server_name: ${JSON.stringify(options.cluster?.serverName ?? `myst-${port}`)}`];
  lines.push(...authorizationConfig(options.replicaNkeys));
  if (options.monitorPort) lines.push(`http: "127.0.0.1:${options.monitorPort}"`);
  if (storeDir) lines.push(`jetstream { store_dir: ${JSON.stringify(storeDir)} }`);
  if (options.cluster) {
    const routes = options.cluster.routePorts.filter((p) => p !== clusterPort).map((p) => JSON.stringify(`nats://127.0.0.1:${p}`));
    lines.push(`cluster { name: "myst", listen: "127.0.0.1:${clusterPort}", routes: [${routes.join(", ")}] }`);
  } else if (leaf) {
    const remotes = options.routes!.map((p) => `{ url: ${JSON.stringify(`nats://127.0.0.1:${p}`)} }`);
    lines.push(`leafnodes { listen: "127.0.0.1:${clusterPort}", remotes: [${remotes.join(", ")}] }`);
  } else {
    lines.push(`leafnodes { listen: "127.0.0.1:${clusterPort}" }`);
  }
  const configFile = path.join(home, "nats.conf");
  fs.writeFileSync(configFile, lines.join("\n") + "\n");

  let child: ChildProcess;
  const launch = async () => {
    child = spawn(NATS_SERVER_BIN!, ["-c", configFile], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.resume();
    await waitForPort(port, 10_000, child);
  };
  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    clusterPort,
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
    restart: async () => {
      if (!fs.existsSync(configFile)) {
        fs.mkdirSync(home, { recursive: true });
        fs.writeFileSync(configFile, lines.join("\n") + "\n");
        leftovers.add(home);
      }
      await launch();
    },
  };
}

/**
 * Starts `size` JetStream servers on loopback that route to each other (cluster "myst"), and
 * waits until JetStream has a meta leader (a few seconds: the servers elect one).
 */
export async function startNatsCluster(size = 3): Promise<NatsServer[]> {
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const servers = await Promise.all(routePorts.map((clusterPort, i) => startNatsServer({ clusterPort, cluster: { serverName: `myst-${i + 1}`, routePorts } })));
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

async function waitForPort(port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode} (port ${port} in use?)`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nats-server did not listen on ${port} within ${timeoutMs} ms`);
}
