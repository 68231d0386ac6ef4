#!/usr/bin/env bash
# Create tests/harness/jwt/.venv with the pinned PyJWT + cryptography (requirements.txt): an
# independent JOSE implementation that the integration suite verifies our assertions with.
# Idempotent: when .venv already matches requirements.txt it returns at once, offline.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
   && "$VENV/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
  exit 0
fi

echo "setup.sh: installing PyJWT and cryptography into $VENV" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# Every line of requirements.txt is pinned, transitive ones included, so --no-deps
# makes pip install exactly that set; pip check then proves it is complete.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$REQ" >&2
"$VENV/bin/python" -m pip check --disable-pip-version-check >&2
echo "$want" > "$STAMP"
echo "setup.sh: done" >&2
