#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages (Pango, HarfBuzz subsetting, a CJK font,
# poppler for PDF checks), then the locked Python environment in .venv/ with the `invoicer` script.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES="libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-wqy-microhei fontconfig poppler-utils"
missing=""
for p in $SYSTEM_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing system packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! python3 -m uv --version >/dev/null 2>&1; then
  echo "setup: installing uv"
  python3 -m pip install -q "uv==0.13.8"
fi
# uv.lock pins every Python dependency; --frozen refuses to run if the lock is stale.
# --compile-bytecode: the packages' .pyc files are written once here (a few seconds on a fresh machine, a
# fraction of a second after), since Python may not write them itself (PYTHONDONTWRITEBYTECODE is set on
# some machines): without them every process compiles pandas and WeasyPrint from source, 2.6 s instead of
# 0.9 s, and the tests start dozens of processes.
python3 -m uv sync --frozen --quiet --compile-bytecode
