#!/usr/bin/env bash
# Installs what building and testing stratumguard needs on Debian/Ubuntu,
# skipping what is already there. Safe to run again.
#   libpcap-dev            the pcap crate links libpcap
#   nftables iptables ipset iproute2   the firewall and network-namespace tests
#   python3                the benchmark corpus generator and the recall test
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in libpcap-dev nftables iptables ipset iproute2 python3 pkg-config; do
    have_pkg "$p" || need+=("$p")
done

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust (https://rustup.rs) and run again" >&2
    exit 1
fi
