#!/usr/bin/env bash
# seed.sh URL N [START] — add N users to a running server with ldapadd.
#
# Users uid=user%06d,ou=people,dc=example,dc=org for indexes START..START+N-1
# (START defaults to 0); see gen-users.sh for the exact entries. Binds as
# cn=admin,dc=example,dc=org with LDAP_ADMIN_PASSWORD (default admin-secret).
# SEED_JOBS=K (default 1) splits the range over K parallel ldapadd connections.
#
# Stdout: nothing. Stderr: one summary line. Exit 0 only if every entry was
# added (an existing entry is an error: 68 alreadyExists).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 2 && $# -le 3 ]] || die "usage: seed.sh URL N [START]"
URL="$1"; N="$2"; START="${3:-0}"; JOBS="${SEED_JOBS:-1}"
[[ "$N" =~ ^[0-9]+$ && "$START" =~ ^[0-9]+$ ]] || die "N and START must be non-negative integers"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "SEED_JOBS must be a positive integer"
command -v ldapadd >/dev/null || die "ldapadd not found (apt-get install ldap-utils)"
(( N > 0 )) || exit 0
(( JOBS > N )) && JOBS=$N

t0=$(date +%s.%N)
pids=()
chunk=$(( (N + JOBS - 1) / JOBS ))
for (( j = 0; j < JOBS; j++ )); do
  s=$(( START + j * chunk ))
  c=$(( chunk ))
  (( s + c > START + N )) && c=$(( START + N - s ))
  (( c > 0 )) || continue
  {
    "$LDAP_HARNESS_DIR/gen-users.sh" "$c" "$s" |
      ldapadd -x -H "$URL" -D "$LDAP_ADMIN_DN" -w "$LDAP_ADMIN_PASSWORD" >/dev/null
  } &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
(( rc == 0 )) || die "ldapadd failed (exit $rc)"
t1=$(date +%s.%N)
note "seeded $N users (user$(printf '%06d' "$START")..user$(printf '%06d' $(( START + N - 1 )))) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
