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
python3 -m uv sync --frozen --quiet
# The packages' .pyc files are written once here (~6 s of CPU on a fresh machine, 0.2 s after), since Python
# may not write them itself (PYTHONDONTWRITEBYTECODE is set on some machines): without them every process
# compiles pandas and WeasyPrint from source, 2.6 s instead of 0.9 s, and the tests start dozens of processes.
# Not the packages' own test suites (a third of their code, never imported): uv's --compile-bytecode compiled
# those too, 15 s of CPU. One process per core (-j 0): 4.3 s instead of 7.1 s on 2 idle cores. A package file
# that is not Python 3 (olefile's olefile2.py, never imported) fails to compile; that is not an error of the set-up.
.venv/bin/python -m compileall -qq -j 0 -x '/tests?/' .venv/lib/python3*/site-packages || true
