#!/usr/bin/env bash
# bulk.sh DIR N [START] — offline bulk load of N users with slapadd.
#
# slapd for DIR must be STOPPED (run this before start.sh, or after stop.sh).
# Initialises DIR first if it is new (same as init.sh). Same entries as
# seed.sh/gen-users.sh; slapadd generates entryUUID, entryCSN, createTimestamp,
# creatorsName (= rootdn) etc. exactly like an online add. Uses slapadd -q
# (quick mode: fewer consistency checks), so the input must not contain
# duplicates of entries already in DIR (re-running with the same START fails).
#
# Stdout: nothing. Stderr: one summary line. Exit 0 on success.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 2 && $# -le 3 ]] || die "usage: bulk.sh DIR N [START]"
N="$2"; START="${3:-0}"
[[ "$N" =~ ^[0-9]+$ && "$START" =~ ^[0-9]+$ ]] || die "N and START must be non-negative integers"
need_tools
DIR="$(abs_dir "$1")"
"$LDAP_HARNESS_DIR/init.sh" "$DIR" >&2
if pid="$(slapd_pid "$DIR")"; then
  die "slapd is running for $DIR (pid $pid); run stop.sh first (slapadd needs it stopped)"
fi
(( N > 0 )) || exit 0

t0=$(date +%s.%N)
"$LDAP_HARNESS_DIR/gen-users.sh" "$N" "$START" >"$DIR/bulk.ldif"
if ! "$SLAPADD_BIN" -q -F "$DIR/slapd.d" -b "$LDAP_SUFFIX" -l "$DIR/bulk.ldif" >"$DIR/bulk.log" 2>&1; then
  tail -n 20 "$DIR/bulk.log" >&2
  die "slapadd failed (see $DIR/bulk.log)"
fi
rm -f "$DIR/bulk.ldif"
t1=$(date +%s.%N)
note "bulk-loaded $N users (user$(printf '%06d' "$START")..user$(printf '%06d' $(( START + N - 1 )))) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
