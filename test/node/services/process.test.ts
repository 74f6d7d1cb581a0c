import { expect } from "chai";
import { OpenVpnProcess } from "../../../node/services/openvpn/process";

describe("openvpn process: failures explained from its log", function () {
  const explained = (...lines: string[]) => {
    const p = new OpenVpnProcess({ configFile: "/nonexistent.conf", managementSocket: "/nonexistent.sock" });
    p.recent.push(...lines);
    return p.explain("openvpn exited (1) while starting");
  };

  it("names a tun device held by another process as TUN_BUSY, not as a permission problem", function () {
    const err = explained(
      "2026-11-25 TUN/TAP device myst0 exists previously, keep at program end",
      "2026-11-25 ERROR: Cannot ioctl TUNSETIFF myst0: Device or resource busy (errno=16)",
      "2026-11-25 Exiting due to fatal error",
    );
    expect(err.code).to.equal("TUN_BUSY");
    expect(err.message).to.match(/another process holds it/);
  });

  it("names a missing capability as CAPABILITY_MISSING, naming CAP_NET_ADMIN", function () {
    const err = explained("2026-11-25 ERROR: Cannot ioctl TUNSETIFF myst0: Operation not permitted (errno=1)");
    expect(err.code).to.equal("CAPABILITY_MISSING");
    expect(err.message).to.match(/CAP_NET_ADMIN/);
  });

  it("names a port in use", function () {
    expect(explained("2026-11-25 TCP/UDP: Socket bind failed on local address [AF_INET][undef]:1194: Address already in use (errno=98)").code).to.equal(
      "PORT_IN_USE",
    );
  });
});
