// Carries TCP connections between network namespaces through a unix socket (the file system is
// shared by every namespace, the network is not). The test topology runs one end in its services
// host and the other in the root namespace, so a service listening on 127.0.0.1 here (a test's
// chain, broker, discovery) is reached at the services host's address from inside the topology,
// over its routers, as a consumer on its own machine reaches them on the internet.
//
// Usage: node bridge.js tcp-to-unix <host> <port> <socket>   listen on host:port, forward to socket
//        node bridge.js unix-to-tcp <socket> <host> <port>   listen on socket, forward to host:port
// Prints "ready" once it listens.
const net = require("node:net");
const fs = require("node:fs");

const [mode, ...args] = process.argv.slice(2);
// A side that ends ends the other once what it sent is written (pipe does); a side that fails
// or closes takes the other down after its pending bytes are flushed (end), not before.
const pipe = (a, b) => {
  a.pipe(b);
  b.pipe(a);
  const fail = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", fail).on("close", () => b.end());
  b.on("error", fail).on("close", () => a.end());
};

let server;
if (mode === "tcp-to-unix") {
  const [host, port, socket] = args;
  server = net.createServer({ noDelay: true }, (c) => pipe(c, net.connect(socket))).listen(Number(port), host);
} else if (mode === "unix-to-tcp") {
  const [socket, host, port] = args;
  fs.rmSync(socket, { force: true });
  server = net.createServer((c) => pipe(c, net.connect({ host, port: Number(port), noDelay: true }))).listen(socket);
} else {
  process.stderr.write("usage: bridge.js tcp-to-unix <host> <port> <socket> | unix-to-tcp <socket> <host> <port>\n");
  process.exit(2);
}
server.on("listening", () => process.stdout.write("ready\n"));
server.on("error", (err) => {
  process.stderr.write(`bridge: ${err.message}\n`);
  process.exit(1);
});
