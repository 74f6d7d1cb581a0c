#!/usr/bin/env bash
# Installs what myst needs on a fresh Debian machine (run as root): the system packages its
# tests and demo use, then the npm dependencies (npm ci also compiles the contracts and the node).
set -euo pipefail
cd "$(dirname "$0")/.."

# nftables: the consumer's kill switch; dnsmasq-base: the provider's resolver for its consumers
# (and the test network's resolvers). dnsmasq-base is the binary alone, with no system service.
# wireguard-go, wireguard-tools: the WireGuard service (userspace: no kernel module here);
# perl: sends the tunnel's hard-NAT spray from wireguard-go's socket (node/services/wireguard/tunnel-spray.ts; its Time::HiRes is not in perl-base);
# python3: sets wireguard-go's UDP receive buffers (pidfd_getfd; node/services/wireguard/socket-buffer.ts);
# chromium: the browser the dashboard tests drive through playwright-core (no browser download);
# conntrack: also the provider's punch route behind a symmetric NAT (node/services/wireguard/punch-route.ts).
# miniupnpd, coturn (a plain STUN server in the tests; the relay service runs it as a TURN server), conntrack: the test network's home routers and its STUN
# server (scripts/lib/home-routers.ts), each run by the tests inside a namespace, never as a service.
# systemd: its systemd-analyze checks packaging/systemd's units offline (no running systemd needed);
# util-linux: setpriv, which runs the provider as its own user with only its capabilities in tests.
packages=(nats-server openvpn wireguard-go wireguard-tools python3 perl openssl iproute2 iptables nftables dnsmasq-base iperf3 curl ca-certificates chromium miniupnpd coturn conntrack systemd util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "install: apt-get install ${missing[*]}"
  apt-get update -qq
  # miniupnpd's and coturn's packages would start their services in the machine's own network
  # (miniupnpd rewriting its firewall): a policy-rc.d that refuses every start, for this install only.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm run --silent build
fi
