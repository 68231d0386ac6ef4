#!/usr/bin/env bash
# stop.sh DIR — stop the slapd started by start.sh DIR and wait for it to exit.
#
# Uses DIR/slapd.pid (and checks the process really is slapd for DIR). SIGTERM
# first, SIGKILL after LDAP_STOP_TIMEOUT seconds (default 20). Exit 0 if it is
# stopped (or was not running), prints nothing on stdout.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || die "usage: stop.sh DIR"
[[ -d "$1" ]] || exit 0
DIR="$(cd -- "$1" && pwd -P)"
TIMEOUT="${LDAP_STOP_TIMEOUT:-20}"

pid="$(slapd_pid "$DIR")" || { rm -f "$DIR/slapd.pid"; exit 0; }
kill -TERM "$pid" 2>/dev/null || true
deadline=$(( SECONDS + TIMEOUT ))
while kill -0 "$pid" 2>/dev/null; do
  if (( SECONDS >= deadline )); then
    note "slapd (pid $pid) ignored SIGTERM for ${TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
    break
  fi
  sleep 0.05
done
rm -f "$DIR/slapd.pid" "$DIR/ldapi"
