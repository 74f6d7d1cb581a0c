// Runs on the machine a namespace stands for (ip netns exec): measures reachability with the built
// node (dist/, as `myst` runs it) and prints one JSON line. Options (argv[2], JSON): stunServers,
// portMapping (ask the router), methods (which protocols, in order), lifetimeS (of the router's mapping), hold (keep the socket and the
// mapping: print `renewed <port>` at each renewal and `got <text> from <address>:<port>` for each
// datagram, until stdin closes; then give the mapping back, print `stopped` and exit).
const dgram = require("node:dgram");
const path = require("node:path");

const dist = path.join(__dirname, "..", "..", "dist", "node", "nat");
const { measureReachability } = require(path.join(dist, "reachability.js"));
const { RouterPortMapper } = require(path.join(dist, "port-mapping.js"));

async function main() {
  const options = JSON.parse(process.argv[2]);
  const socket = dgram.createSocket("udp4");
  await new Promise((resolve) => socket.bind(0, resolve));
  const portMapper = options.portMapping
    ? new RouterPortMapper({ lifetimeS: options.lifetimeS, methods: options.methods, onRenewed: (m) => process.stdout.write(`renewed ${m.externalPort}\n`) })
    : undefined;
  const result = await measureReachability({ stunServers: options.stunServers, socket, portMapper });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (options.hold) {
    socket.on("message", (b, from) => process.stdout.write(`got ${b.toString()} from ${from.address}:${from.port}\n`));
    await new Promise((resolve) => {
      process.stdin.on("end", resolve);
      process.stdin.resume();
    });
  }
  await portMapper?.stop();
  socket.close();
  process.stdout.write("stopped\n");
}

// Only as a program: mocha's run loads every .js under test/, and a probe started there would exit
// its worker ("Worker terminated Unexpectedly").
if (require.main === module)
  main().catch((err) => {
    process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  });
