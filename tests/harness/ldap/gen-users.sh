#!/usr/bin/env bash
# gen-users.sh N [START] — write LDIF for N test users to stdout (used by
# seed.sh and bulk.sh). Index i in [START, START+N) becomes:
#
#   dn: uid=user%06d,ou=people,dc=example,dc=org
#   objectClass: inetOrgPerson, adUserLite
#   uid / cn / sn: user%06d     mail: user%06d@example.org
#   userAccountControl: 512
set -euo pipefail
[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: gen-users.sh N [START]" >&2; exit 1; }
N="$1"; START="${2:-0}"
[[ "$N" =~ ^[0-9]+$ && "$START" =~ ^[0-9]+$ ]] || { echo "gen-users.sh: N and START must be non-negative integers" >&2; exit 1; }
exec awk -v n="$N" -v s="$START" 'BEGIN {
  for (i = s; i < s + n; i++) {
    u = sprintf("user%06d", i)
    printf "dn: uid=%s,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: adUserLite\nuid: %s\ncn: %s\nsn: %s\nmail: %s@example.org\nuserAccountControl: 512\n\n", u, u, u, u, u
  }
}'
