#!/usr/bin/env bash
# start.sh DIR PORT — start a private slapd for tests.
#
# Initialises DIR on first use (see init.sh), then starts Debian's slapd as the
# current user, listening only on ldap://127.0.0.1:PORT (plus ldapi in DIR/ldapi
# when the socket path is short enough). slapd daemonizes itself; its pid is in
# DIR/slapd.pid. Waits until the sweeper service account can bind, then prints
# exactly one line on stdout and exits 0:
#
#   ready ldap://127.0.0.1:PORT
#
# On failure: nothing on stdout, diagnostics on stderr, exit 1, no slapd left.
#
# Env: LDAP_ADMIN_PASSWORD, LDAP_SWEEPER_PASSWORD (only used when DIR is new;
#      the sweeper one is also used for the readiness bind),
#      LDAP_START_TIMEOUT seconds (default 30),
#      LDAP_DEBUG: slapd debug level (e.g. "stats", "any", 256). When set, slapd
#      runs un-forked (-d) in its own session with output to DIR/slapd.log.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 2 ]] || die "usage: start.sh DIR PORT"
PORT="$2"
[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT >= 1 && PORT <= 65535 )) || die "bad port: $PORT"
need_tools
DIR="$(abs_dir "$1")"
TIMEOUT="${LDAP_START_TIMEOUT:-30}"

"$LDAP_HARNESS_DIR/init.sh" "$DIR" >&2

if pid="$(slapd_pid "$DIR")"; then
  die "slapd already running for $DIR (pid $pid); run stop.sh first"
fi
rm -f "$DIR/slapd.pid" "$DIR/slapd.args"

URL="ldap://127.0.0.1:$PORT"
URLS="$URL/"
if (( ${#DIR} + 6 <= 100 )); then          # sun_path is 108 bytes
  rm -f "$DIR/ldapi"
  URLS+=" ldapi://$(pct_encode "$DIR/ldapi")/"
else
  note "DIR path too long for a unix socket; ldapi disabled"
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
if port_busy; then
  die "something is already listening on 127.0.0.1:$PORT"
fi

: >"$DIR/slapd.log"
# The caller usually reads our stdout until EOF: slapd must never hold it.
if [[ -n "${LDAP_DEBUG:-}" ]]; then
  setsid "$SLAPD_BIN" -d "$LDAP_DEBUG" -F "$DIR/slapd.d" -h "$URLS" \
    </dev/null >>"$DIR/slapd.log" 2>&1 &
  bgpid=$!
  disown "$bgpid" 2>/dev/null || true
else
  rc=0
  "$SLAPD_BIN" -F "$DIR/slapd.d" -h "$URLS" </dev/null >>"$DIR/slapd.log" 2>&1 || rc=$?
  if (( rc != 0 )); then
    cat "$DIR/slapd.log" >&2 2>/dev/null || true
    if port_busy; then
      die "slapd exited with status $rc: 127.0.0.1:$PORT is already in use"
    fi
    die "slapd exited with status $rc (rerun with LDAP_DEBUG=any for details)"
  fi
fi

fail() {
  local msg="$1"
  if [[ -n "${bgpid:-}" ]] && kill -0 "$bgpid" 2>/dev/null && ! [[ -s "$DIR/slapd.pid" ]]; then
    kill "$bgpid" 2>/dev/null || true
  fi
  "$LDAP_HARNESS_DIR/stop.sh" "$DIR" || true
  tail -n 30 "$DIR/slapd.log" >&2 2>/dev/null || true
  die "$msg"
}

deadline=$(( SECONDS + TIMEOUT ))
while :; do
  rc=0
  ldapwhoami -x -o nettimeout=2 -H "$URL" -D "$LDAP_SWEEPER_DN" -w "$LDAP_SWEEPER_PASSWORD" \
    >/dev/null 2>"$DIR/start-bind.err" || rc=$?
  case "$rc" in
    0) break ;;
    49) fail "sweeper bind rejected (49): was $DIR initialised with another LDAP_SWEEPER_PASSWORD?" ;;
  esac
  if [[ -s "$DIR/slapd.pid" ]] && ! slapd_pid "$DIR" >/dev/null; then
    fail "slapd died during startup"
  fi
  if [[ -n "${bgpid:-}" ]] && ! kill -0 "$bgpid" 2>/dev/null; then
    fail "slapd died during startup"
  fi
  (( SECONDS < deadline )) || fail "slapd not ready after ${TIMEOUT}s: $(cat "$DIR/start-bind.err")"
  sleep 0.05
done
rm -f "$DIR/start-bind.err"
echo "ready $URL"
