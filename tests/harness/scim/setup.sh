#!/usr/bin/env bash
# Create tests/harness/scim/.venv with the pinned scim2-server (requirements.txt).
# Idempotent: when .venv already matches requirements.txt it returns at once, offline.
# Needs Python >= 3.11 (scim2-server's floor); pick one with PYTHON=/path/to/python3.11.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
   && "$VENV/bin/python" -c 'import scim2_server' 2>/dev/null; then
  exit 0
fi

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "setup.sh: $PYTHON is missing or older than 3.11; set PYTHON=" >&2
  exit 1
fi

echo "setup.sh: installing scim2-server into $VENV" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# Every line of requirements.txt is pinned, transitive ones included, so --no-deps
# makes pip install exactly that set; pip check then proves it is complete.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$REQ" >&2
"$VENV/bin/python" -m pip check --disable-pip-version-check >&2
echo "$want" > "$STAMP"
echo "setup.sh: done" >&2
