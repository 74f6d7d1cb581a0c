import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { hostsThroughResolverFile } from "../../../node/consumer-protection/nsswitch";
import { pointResolver, resolverFile, restoreResolver, snapshotResolver } from "../../../node/consumer-protection/resolver";
import { tempDir } from "../../../scripts/lib/tmp";

describe("consumer protection: the resolver file", function () {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it("is /etc/netns/<name>/resolv.conf in a namespace, /etc/resolv.conf on the machine, and refuses a name that is a path", function () {
    expect(resolverFile("myst-ab12-c1")).to.equal("/etc/netns/myst-ab12-c1/resolv.conf");
    expect(resolverFile()).to.equal("/etc/resolv.conf");
    expect(() => resolverFile("../etc")).to.throw(/not a network namespace name/);
  });

  it("points a regular file at the provider's resolver in place (same inode) and restores content and mode exactly", function () {
    const file = path.join(tmp.dir, "file", "resolv.conf");
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(file, "search lan\nnameserver 192.168.1.1\n", { mode: 0o640 });
    const inode = fs.statSync(file).ino;
    const snapshot = snapshotResolver(file);
    pointResolver(snapshot, ["10.8.0.1"]);
    expect(fs.readFileSync(file, "utf8")).to.match(/^nameserver 10\.8\.0\.1$/m);
    expect(fs.statSync(file).ino).to.equal(inode);
    restoreResolver(snapshot);
    expect(fs.readFileSync(file, "utf8")).to.equal("search lan\nnameserver 192.168.1.1\n");
    expect(fs.statSync(file).mode & 0o777).to.equal(0o640);
  });

  it("replaces a symlink (systemd-resolved's stub) rather than writing through it, and puts the link back", function () {
    const dir = path.join(tmp.dir, "link");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "stub-resolv.conf"), "nameserver 127.0.0.53\n");
    const file = path.join(dir, "resolv.conf");
    fs.symlinkSync("stub-resolv.conf", file);
    const snapshot = snapshotResolver(file);
    pointResolver(snapshot, ["10.8.0.1"]);
    expect(fs.lstatSync(file).isSymbolicLink()).to.equal(false);
    expect(fs.readFileSync(path.join(dir, "stub-resolv.conf"), "utf8")).to.equal("nameserver 127.0.0.53\n");
    restoreResolver(snapshot);
    expect(fs.readlinkSync(file)).to.equal("stub-resolv.conf");
  });

  it("removes a file (and the directory) it had to create", function () {
    const file = path.join(tmp.dir, "absent", "resolv.conf");
    const snapshot = snapshotResolver(file);
    pointResolver(snapshot, ["10.8.0.1"]);
    expect(fs.existsSync(file)).to.equal(true);
    restoreResolver(snapshot);
    expect(fs.existsSync(path.dirname(file))).to.equal(false);
  });

  it("refuses to write something that is not an address", function () {
    expect(() => pointResolver(snapshotResolver(path.join(tmp.dir, "x")), ["10.8.0.1\nnameserver 1.1.1.1"])).to.throw(/not resolver addresses/);
  });

  describe("the name-service switch beside it", function () {
    // Fedora's and Debian-with-systemd-resolved's kind of line: resolved and mDNS answer before dns.
    const leaky =
      "passwd:         files systemd\nhosts:          files resolve [!UNAVAIL=return] mdns4_minimal [NOTFOUND=return] dns myhostname\nnetworks:       files\n";
    const hostsLine = (file: string) =>
      fs
        .readFileSync(file, "utf8")
        .split("\n")
        .find((l) => l.startsWith("hosts:"));

    it("keeps only the host sources that go through the resolver file, and changes nothing that already does", function () {
      expect(hostsThroughResolverFile(leaky)?.split("\n")).to.include.members([
        "passwd:         files systemd",
        "hosts: files dns myhostname",
        "networks:       files",
      ]);
      expect(hostsThroughResolverFile("hosts: files resolve\n")).to.match(/^hosts: files dns$/m);
      expect(hostsThroughResolverFile("hosts: files dns\n")).to.equal(undefined);
      expect(hostsThroughResolverFile("hosts:\tfiles myhostname dns # local first\n")).to.equal(undefined);
      expect(hostsThroughResolverFile("passwd: files\n")).to.equal(undefined);
    });

    it("while pointed, sends host lookups past systemd-resolved and mDNS to the resolver file, and puts the switch back exactly", function () {
      const dir = path.join(tmp.dir, "resolved");
      fs.mkdirSync(dir);
      const file = path.join(dir, "resolv.conf");
      const nsswitch = path.join(dir, "nsswitch.conf");
      fs.writeFileSync(file, "nameserver 127.0.0.53\n");
      fs.writeFileSync(nsswitch, leaky, { mode: 0o640 });
      const inode = fs.statSync(nsswitch).ino;
      const snapshot = snapshotResolver(file);
      pointResolver(snapshot, ["10.8.0.1"]);
      expect(hostsLine(nsswitch)).to.equal("hosts: files dns myhostname");
      expect(fs.readFileSync(nsswitch, "utf8")).to.match(/^passwd: {9}files systemd$/m);
      expect(fs.statSync(nsswitch).ino, "rewritten in place, as namespaces may have bound it").to.equal(inode);
      restoreResolver(snapshot);
      expect(fs.readFileSync(nsswitch, "utf8")).to.equal(leaky);
      expect(fs.statSync(nsswitch).mode & 0o777).to.equal(0o640);
    });

    it("in a namespace without a switch of its own, writes one from the machine's and removes it with the directory", function () {
      const system = path.join(tmp.dir, "system-nsswitch.conf");
      fs.writeFileSync(system, leaky);
      const file = path.join(tmp.dir, "netns-x", "resolv.conf");
      const snapshot = snapshotResolver(file);
      pointResolver(snapshot, ["10.8.0.1"], { system });
      expect(hostsLine(path.join(tmp.dir, "netns-x", "nsswitch.conf"))).to.equal("hosts: files dns myhostname");
      expect(fs.readFileSync(system, "utf8")).to.equal(leaky);
      restoreResolver(snapshot);
      expect(fs.existsSync(path.join(tmp.dir, "netns-x"))).to.equal(false);
    });

    it("leaves a switch that already goes through the resolver file alone, and does not undo someone else's change to it", function () {
      const dir = path.join(tmp.dir, "plain");
      fs.mkdirSync(dir);
      const file = path.join(dir, "resolv.conf");
      const nsswitch = path.join(dir, "nsswitch.conf");
      fs.writeFileSync(file, "nameserver 192.168.1.1\n");
      fs.writeFileSync(nsswitch, "hosts: files dns\n");
      const snapshot = snapshotResolver(file);
      pointResolver(snapshot, ["10.8.0.1"]);
      expect(fs.readFileSync(nsswitch, "utf8")).to.equal("hosts: files dns\n");
      fs.writeFileSync(nsswitch, "hosts: files dns myhostname\n"); // the administrator, meanwhile
      restoreResolver(snapshot);
      expect(fs.readFileSync(nsswitch, "utf8")).to.equal("hosts: files dns myhostname\n");
    });
  });
});
