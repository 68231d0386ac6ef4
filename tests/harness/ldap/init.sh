#!/usr/bin/env bash
# init.sh DIR — create a private OpenLDAP instance (config + MDB data) in DIR.
#
# Idempotent: if DIR/slapd.d already exists nothing is changed. start.sh and
# bulk.sh call this themselves; run it directly only to prepare a DIR without
# starting anything. Prints nothing on stdout; diagnostics on stderr.
#
# Env: LDAP_ADMIN_PASSWORD (default admin-secret),
#      LDAP_SWEEPER_PASSWORD (default sweeper-secret).
# Both are hashed ({SSHA}) into DIR at init time: later runs against the same
# DIR must use the same passwords.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || die "usage: init.sh DIR"
need_tools
DIR="$(abs_dir "$1")"

if [[ -d "$DIR/slapd.d" ]]; then
  exit 0
fi
[[ ! -e "$DIR/data" ]] || die "$DIR/data exists but $DIR/slapd.d does not; use a fresh empty directory"

umask 077
rootpw="$(hash_password "$LDAP_ADMIN_PASSWORD")"
sweeperpw="$(hash_password "$LDAP_SWEEPER_PASSWORD")"
threads="$(nproc 2>/dev/null || echo 1)"
(( threads > 4 )) && threads=4

# --- cn=config LDIF from the template -------------------------------------
{
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" == "@SCHEMAS@" ]]; then
      for s in /etc/ldap/schema/core.ldif /etc/ldap/schema/cosine.ldif \
               /etc/ldap/schema/nis.ldif /etc/ldap/schema/inetorgperson.ldif \
               "$LDAP_HARNESS_DIR/ad-lite.ldif"; do
        [[ -r "$s" ]] || die "schema file $s missing"
        cat -- "$s"
        printf '\n'
      done
      continue
    fi
    line="${line//@DIR@/$DIR}"
    line="${line//@ROOTPW@/$rootpw}"
    line="${line//@UID@/$(id -u)}"
    line="${line//@GID@/$(id -g)}"
    line="${line//@TOOL_THREADS@/$threads}"
    printf '%s\n' "$line"
  done <"$LDAP_HARNESS_DIR/config.ldif.in"
} >"$DIR/config.ldif"

mkdir -p "$DIR/slapd.d.tmp" "$DIR/data"
if ! "$SLAPADD_BIN" -n0 -F "$DIR/slapd.d.tmp" -l "$DIR/config.ldif" >"$DIR/init.log" 2>&1; then
  cat "$DIR/init.log" >&2
  rm -rf "$DIR/slapd.d.tmp"
  die "slapadd of cn=config failed"
fi

# --- base entries ---------------------------------------------------------
cat >"$DIR/base.ldif" <<LDIF
dn: $LDAP_SUFFIX
objectClass: top
objectClass: dcObject
objectClass: organization
dc: example
o: Example Org (jitbridge tests)

dn: $LDAP_PEOPLE_DN
objectClass: organizationalUnit
ou: people

dn: $LDAP_SERVICES_DN
objectClass: organizationalUnit
ou: services

dn: $LDAP_SWEEPER_DN
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: sweeper
description: read-only service account for the jitbridge LDAP sweeper
userPassword: $sweeperpw
LDIF

if ! "$SLAPADD_BIN" -F "$DIR/slapd.d.tmp" -b "$LDAP_SUFFIX" -l "$DIR/base.ldif" >>"$DIR/init.log" 2>&1; then
  cat "$DIR/init.log" >&2
  rm -rf "$DIR/slapd.d.tmp" "$DIR/data"
  die "slapadd of base entries failed"
fi
# Publish slapd.d last so a half-initialised DIR is never mistaken for a good one.
mv "$DIR/slapd.d.tmp" "$DIR/slapd.d"
