#!/usr/bin/env bash
# The first command on a fresh clone: installs the Debian packages dadi uses (as root; otherwise
# prints the exact apt-get command to run), installs the npm dependencies and builds dist/, puts
# `dadi` on PATH, then runs `dadi demo`. Safe to run again.
#   DADI_BIN_DIR   where the `dadi` link goes (default /usr/local/bin for root, else ~/.local/bin)
#   DADI_NO_DEMO=1 stop before the demo
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)

mapfile -t packages < <(sed 's/#.*//' scripts/system-packages.txt | tr -s ' \t' '\n' | grep -v '^$')
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: not root, so these Debian packages are not installed: ${missing[*]}"
    echo "setup: install them with:  sudo apt-get install -y --no-install-recommends ${missing[*]}"
  fi
fi
if [ "$(id -u)" = 0 ]; then
  # Mounting needs /dev/fuse and the loop driver.
  [ -e /dev/fuse ] || mknod -m 666 /dev/fuse c 10 229 || true
  modprobe loop 2>/dev/null || true
fi

if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=18)?0:1)'; then
  echo "setup: dadi needs Node.js >= 20.18 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
echo "setup: npm ci (dependencies and the build of dist/)"
npm ci --no-fund --no-audit --loglevel=error

if [ "$(id -u)" = 0 ]; then bindir=${DADI_BIN_DIR:-/usr/local/bin}; else bindir=${DADI_BIN_DIR:-$HOME/.local/bin}; fi
mkdir -p "$bindir"
ln -sfn "$here/bin/dadi.js" "$bindir/dadi"
echo "setup: dadi is $bindir/dadi -> $here/bin/dadi.js"
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "setup: $bindir is not on your PATH; add it:  export PATH=\"$bindir:\$PATH\"" ;;
esac

if [ "${DADI_NO_DEMO:-0}" != 1 ]; then
  echo "setup: dadi demo"
  "$bindir/dadi" demo
fi
