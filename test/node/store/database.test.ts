import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { openDatabase } from "../../../node/store/database";
import { tempDir } from "../../../scripts/lib/tmp";

describe("the node's database files", function () {
  it("are readable by their owner only (myst.db, -wal and -shm), whatever the umask", function () {
    const tmp = tempDir();
    const old = process.umask(0o022);
    try {
      const file = path.join(tmp.dir, "myst.db");
      const db = openDatabase(file);
      db.exec("CREATE TABLE IF NOT EXISTS t (x)");
      db.prepare("INSERT INTO t VALUES (1)").run();
      const files = fs.readdirSync(tmp.dir).filter((f) => f.startsWith("myst.db"));
      expect(files).to.include.members(["myst.db", "myst.db-wal", "myst.db-shm"]);
      for (const f of files) expect((fs.statSync(path.join(tmp.dir, f)).mode & 0o777).toString(8), f).to.equal("600");
      db.close();
    } finally {
      process.umask(old);
      tmp.cleanup();
    }
  });
});
