// The "internet host" of the test topology: answers every request with the caller's address.
// Usage (inside a namespace): node whoami.js <address> <port>
const http = require("node:http");
const [address, port] = process.argv.slice(2);
http
  .createServer((req, res) => {
    const body = Buffer.alloc(Number(new URL(req.url, "http://x").searchParams.get("bytes") || 0), 120);
    res.setHeader("content-type", "text/plain");
    res.end(body.length ? body : req.socket.remoteAddress.replace(/^::ffff:/, "") + "\n");
  })
  .listen(Number(port), address, () => process.stdout.write(`listening ${address}:${port}\n`));
