#!/usr/bin/env bash
# Start the SAML test IdP in the foreground: start.sh [PORT]  (0/absent = ephemeral;
# SAML_IDP_PORT is used when no argument is given). Configuration is by environment
# (see README.md). Prints one JSON ready line on stdout; logs go to stderr.
# Exits when its stdin reaches EOF (SAML_IDP_IGNORE_STDIN=1 disables that) or on SIGTERM.
# Run setup.sh (npm ci) once first; it is not run here so the start stays fast and offline.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -d "$HERE/node_modules/samlp" ]]; then
  echo "start.sh: $HERE/node_modules missing: run $HERE/setup.sh (or npm ci there) first" >&2
  exit 2
fi
exec node "$HERE/server.mjs" "$@"
