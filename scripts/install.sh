#!/usr/bin/env bash
# Installs everything nsm-ts needs on a Debian machine (run as root): system packages, then npm packages.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it installs Debian packages and later plumbs network namespaces)" >&2
  exit 1
fi
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "install.sh: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# build-essential + python3: better-sqlite3 builds from source (node-gyp).
# iproute2, iputils-ping, iperf3, procps: network namespaces, liveness pings, benchmarks, process control;
# openssl: tests make X.509-SVIDs for mTLS.
# nftables: the TF emulator's floating-IP NAT and SNAT.
# python3-venv: TF's official Python client (vnc_api, from PyPI) is run against the TF emulator in the tests.
# prometheus, chromium: the observability tests start their own Prometheus (it scrapes our /metrics) and drive a
# headless Chromium with playwright-core (test/helpers/prometheus.ts, chromium.ts). --no-install-recommends
# matters most for these two: it keeps out prometheus-node-exporter (another system service, on :9100) and
# ~125 desktop packages chromium recommends (38 packages instead of 165 on Debian 12).
packages=(build-essential python3 python3-venv iproute2 iputils-ping iperf3 procps openssl nftables prometheus chromium)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's prometheus package enables its system service (prometheus.service and the SysV rc links) and starts
# it on :9090 where services may start (a container's policy-rc.d usually denies that). The tests start their
# own Prometheus on ephemeral 127.0.0.1 ports, so when this run installed the package, stop that service and
# disable it; a Prometheus installed before is the machine owner's and left alone.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  else
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null; then
      systemctl disable prometheus.service >/dev/null 2>&1 || true # offline: unit symlink and rc links
    else
      update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
  fi
fi

npm ci --no-audit --no-fund --loglevel=error

# TF's official config API client, contrail-api-client R2005 (its vnc_api needs future, six and requests), in a
# venv of the checkout: test/integration/vnc-python.test.ts drives the emulator with it.
venv=.cache/vnc-python
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import vnc_api.vnc_api" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check contrail-api-client==2005 future==1.0.0 six==1.17.0 \
    requests==2.34.2
fi
