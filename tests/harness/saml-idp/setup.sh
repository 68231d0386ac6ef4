#!/usr/bin/env bash
# Install the pinned npm dependencies (package-lock.json) into node_modules/ with `npm ci`.
# Idempotent: returns at once, offline, when node_modules already matches the lock file.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAMP="$HERE/node_modules/.package-lock.sha256"
want="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -d "$HERE/node_modules/samlp" ]]; then
  exit 0
fi
echo "setup.sh: npm ci in $HERE" >&2
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >&2)
echo "$want" > "$STAMP"
echo "setup.sh: done" >&2
