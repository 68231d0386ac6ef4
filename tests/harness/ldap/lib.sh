# Shared helpers for the LDAP harness scripts. Sourced, not executed.
# shellcheck shell=bash

LDAP_HARNESS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

LDAP_SUFFIX="dc=example,dc=org"
LDAP_ADMIN_DN="cn=admin,dc=example,dc=org"
LDAP_PEOPLE_DN="ou=people,dc=example,dc=org"
LDAP_SERVICES_DN="ou=services,dc=example,dc=org"
LDAP_SWEEPER_DN="cn=sweeper,ou=services,dc=example,dc=org"
: "${LDAP_ADMIN_PASSWORD:=admin-secret}"
: "${LDAP_SWEEPER_PASSWORD:=sweeper-secret}"

SLAPD_BIN="${SLAPD_BIN:-/usr/sbin/slapd}"
SLAPADD_BIN="${SLAPADD_BIN:-/usr/sbin/slapadd}"
SLAPPASSWD_BIN="${SLAPPASSWD_BIN:-/usr/sbin/slappasswd}"

die() { echo "ldap-harness: $*" >&2; exit 1; }
note() { echo "ldap-harness: $*" >&2; }

need_tools() {
  local t
  for t in "$SLAPD_BIN" "$SLAPADD_BIN" "$SLAPPASSWD_BIN"; do
    [[ -x "$t" ]] || die "$t not found (apt-get install slapd ldap-utils)"
  done
  for t in ldapadd ldapwhoami; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install ldap-utils)"
  done
}

# abs_dir DIR: create DIR if missing and print its absolute, symlink-free path.
abs_dir() {
  mkdir -p -- "$1" || die "cannot create $1"
  local d
  d="$(cd -- "$1" && pwd -P)" || die "cannot enter $1"
  [[ "$d" != *$'\n'* ]] || die "directory name must not contain a newline"
  printf '%s\n' "$d"
}

# pct_encode STRING: percent-encode everything but [A-Za-z0-9._~-] (for ldapi URLs).
pct_encode() {
  local s="$1" out="" c i
  local LC_ALL=C
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [A-Za-z0-9._~-]) out+="$c" ;;
      *) out+="$(printf '%%%02X' "'$c")" ;;
    esac
  done
  printf '%s\n' "$out"
}

# slapd_pid DIR: print the pid of the slapd serving DIR if it is alive, else fail.
# Checks /proc/PID/cmdline so a recycled pid is never mistaken for our slapd.
slapd_pid() {
  local dir="$1" pid
  [[ -s "$dir/slapd.pid" ]] || return 1
  pid="$(tr -dc 0-9 <"$dir/slapd.pid")"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$dir/slapd.d" || return 1
  fi
  printf '%s\n' "$pid"
}

# hash_password SECRET: print an {SSHA} hash (secret passed via a file, not argv).
hash_password() {
  local f
  f="$(mktemp)" || die "mktemp failed"
  printf '%s' "$1" >"$f"
  "$SLAPPASSWD_BIN" -h '{SSHA}' -T "$f" || { rm -f "$f"; die "slappasswd failed"; }
  rm -f "$f"
}
