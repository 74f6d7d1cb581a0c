// The "internet host" of the test topology: answers every request with the caller's address.
// Usage (inside a namespace): node whoami.js <port> <address> [<address> …]
const http = require("node:http");
const [port, ...addresses] = process.argv.slice(2);
let listening = 0;
for (const address of addresses) {
  http
    .createServer((req, res) => {
      const body = Buffer.alloc(Number(new URL(req.url, "http://x").searchParams.get("bytes") || 0), 120);
      res.setHeader("content-type", "text/plain");
      res.end(body.length ? body : req.socket.remoteAddress.replace(/^::ffff:/, "") + "\n");
    })
    .listen(Number(port), address, () => {
      if (++listening === addresses.length) process.stdout.write(`listening ${addresses.join(", ")} :${port}\n`);
    });
}
