#!/usr/bin/env bash
# Set up yizhangtu on a fresh Debian machine: system packages (PostGIS, Chromium, CJK fonts) when we are
# root, a Python 3.12 virtual environment in .venv with the pinned packages, and the web page's npm assets.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
dpkg -s postgresql-15-postgis-3 >/dev/null 2>&1 \
  || need_apt+=(postgresql-15-postgis-3)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need_apt+=(fonts-noto-cjk)
command -v fc-match >/dev/null 2>&1 || need_apt+=(fontconfig)
command -v pdftotext >/dev/null 2>&1 || need_apt+=(poppler-utils)  # the tests read the 核查表 PDFs back
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install the Debian packages: ${need_apt[*]} (sudo apt-get install …)" >&2
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  # a pyenv shim may exist without working: ask each candidate to run
  for cand in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
              /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.12 not found (pygeoapi >= 0.22 needs it); set PYTHON=/path/to/python3.12" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev,bench]"
# ogctests pins older pyarrow / pytest / httpx than ours; its runtime needs are in the dev extra
.venv/bin/python -m pip install -q --no-deps "ogctests==0.1.15"

if [ -f services/web/package.json ]; then
  (cd services/web && npm ci --no-audit --no-fund --loglevel=error)
fi
# MapLibre's glyph PBFs (Latin, punctuation, full-width forms) made from the installed Noto Sans CJK SC
if [ ! -f "services/web/glyphs/Noto Sans CJK SC Regular/0-255.pbf" ]; then
  .venv/bin/python -m services.jobs.glyphs --out services/web/glyphs || echo "setup: glyphs not made (fonts-noto-cjk missing?); the server renders them on request" >&2
fi
echo "setup: ready (.venv with $(.venv/bin/python --version))"
