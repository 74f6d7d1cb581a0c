import { expect } from "chai";
import { PrespawnedCommand } from "../../../node/services/prespawned";
import { Spawner } from "../../../node/services/spawner";
import { rejectionOf } from "../../support/rejection";

describe("the spawning helper: short commands started outside the node (no fork of the node on the connect path)", function () {
  const spawner = new Spawner();

  it("runs a command with its input and answers with its output", async function () {
    expect(await spawner.run(["/bin/cat"], "some input")).to.equal("some input");
    expect(await spawner.run(["/bin/echo", "a", "b"])).to.equal("a b\n");
  });

  it("fails with the command and the first line of its stderr, or its exit code", async function () {
    const err = await rejectionOf(spawner.run(["/bin/sh", "-c", "echo first >&2; echo second >&2; exit 3"]));
    expect([err.code, err.message]).to.deep.equal(["COMMAND_FAILED", "/bin/sh -c echo first >&2; echo second >&2; exit 3: first"]);
    expect((await rejectionOf(spawner.run(["/bin/false"]))).message).to.equal("/bin/false: exited 1");
    expect((await rejectionOf(spawner.run(["/nonexistent/program"]))).code).to.equal("COMMAND_FAILED");
  });

  it("ends a command that outlives its time and says so", async function () {
    expect((await rejectionOf(spawner.run(["/bin/sleep", "30"], "", 100))).message).to.equal("/bin/sleep 30: did not finish within 100 ms");
  });

  it("starts a command now and gives it its input later, once; one cancelled ends having done nothing", async function () {
    const later = new PrespawnedCommand(["/bin/cat"]);
    const unused = new PrespawnedCommand(["/bin/sh", "-c", "cat; exit 1"]);
    expect(await later.run("given later")).to.equal("given later");
    expect((await rejectionOf(later.run("again"))).message).to.equal("/bin/cat was already used");
    unused.cancel();
    // Each answer goes to its own request, however many run at once.
    const [a, b] = await Promise.all([spawner.run(["/bin/echo", "one"]), spawner.run(["/bin/echo", "two"])]);
    expect([a, b]).to.deep.equal(["one\n", "two\n"]);
  });

  it("starts a long-lived program that looks like a child of the node: pid, output, input, exit, signals", async function () {
    const cat = spawner.launch(["/bin/sh", "-c", "echo started; cat; echo done >&2; exit 7"], { stdin: true });
    const out = { stdout: "", stderr: "" };
    cat.stdout.on("data", (d: Buffer) => (out.stdout += d.toString()));
    cat.stderr.on("data", (d: Buffer) => (out.stderr += d.toString()));
    await new Promise((resolve) => cat.once("spawn", () => resolve(undefined)));
    expect(cat.pid).to.be.a("number");
    cat.stdin!.end("echoed\n");
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => cat.once("exit", (c, s) => resolve([c, s])));
    expect([code, signal, cat.exitCode]).to.deep.equal([7, null, 7]);
    expect(out).to.deep.equal({ stdout: "started\nechoed\n", stderr: "done\n" });

    const sleeper = spawner.launch(["/bin/sleep", "30"]);
    await new Promise((resolve) => sleeper.once("spawn", () => resolve(undefined)));
    expect(sleeper.kill("SIGTERM")).to.equal(true);
    await new Promise((resolve) => sleeper.once("exit", () => resolve(undefined)));
    expect([sleeper.exitCode, sleeper.signalCode]).to.deep.equal([null, "SIGTERM"]);
  });
});
