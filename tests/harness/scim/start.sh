#!/usr/bin/env bash
# Start the SCIM test server in the foreground: start.sh [PORT]  (0/absent = ephemeral).
# Needs SCIM_TOKEN. Prints one line "ready http://127.0.0.1:PORT/v2" on stdout.
# Exits when its stdin reaches EOF (set SCIM_IGNORE_STDIN=1 to disable) or on SIGTERM.
# Run setup.sh once first (it is not run here, so the start stays fast and offline).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$HERE/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
  echo "start.sh: $HERE/.venv missing: run $HERE/setup.sh first" >&2
  exit 2
fi
exec "$PY" "$HERE/server.py" "$@"
