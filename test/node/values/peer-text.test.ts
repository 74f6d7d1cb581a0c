import { expect } from "chai";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { PeerText } from "../../../node/values/schemas";
import { checkDialogMessage } from "../../../node/dialog/message";

describe("a peer's words for a person to read", function () {
  const text = TypeCompiler.Compile(PeerText(100));

  it("takes plain text, tabs and newlines", function () {
    expect(text.Check("the provider's daily traffic cap is reached")).to.equal(true);
    expect(text.Check("two\tcolumns\nand a second line, ünïcödé and emoji 🙂")).to.equal(true);
  });

  it("refuses terminal escape sequences and other control characters (ESC, CSI, CR, NUL, BEL)", function () {
    for (const bad of ["\u001b[2J\u001b[Hall clear", "\u009b31mred", "over\rwritten", "nul\u0000", "bell\u0007"])
      expect(text.Check(bad), JSON.stringify(bad)).to.equal(false);
  });

  it("guards a dialog error's message: a response whose message carries an escape sequence is malformed", function () {
    const hex = (c: string) => c.repeat(32);
    const response = (message: string) => ({
      v: 1,
      kind: "response",
      type: "session.create",
      from: `0x${"a".repeat(40)}`,
      to: `0x${"b".repeat(40)}`,
      dialog: hex("1"),
      id: hex("2"),
      ts: 1,
      re: hex("3"),
      body: null,
      error: { code: "ACCESS_DENIED", message },
    });
    expect(checkDialogMessage.Check(response("your address is on the deny list"))).to.equal(true);
    expect(checkDialogMessage.Check(response("\u001b]0;pwned\u0007denied"))).to.equal(false);
  });
});
