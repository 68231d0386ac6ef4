#!/usr/bin/env bash
# Benchmarks with printed figures (never timed tests). Measures, in one run on this machine:
#  - /auth/verify with a valid session, in-process and Redis sessions, next to a plain
#    actix-web handler (the ceiling): req/s, p50/p99 latency, server CPU per request (wrk -t2 -c64);
#  - bridge CPU per full JIT login (login + callback: code exchange, ID token validation,
#    userinfo, mapping, provisioning transaction, session) on SQLite and PostgreSQL, first
#    logins (account created) and repeat logins (account updated), against oidc-provider;
#  - the SAML ACS in-process, stage by stage (examples/saml_acs_bench: verify, mapping,
#    provisioning, session; thread CPU medians; SQLite and PostgreSQL);
#  - the same for SP-initiated SAML logins (signed AuthnRequest; ACS: XML signature check
#    with libxmlsec1, mapping, provisioning, session) against the samlp IdP, with signed
#    and with signed+encrypted assertions;
#  - the deprovisioning sweeper (examples/sweep_bench): one reconcile of 100,000 and 1,000,000
#    local accounts against an in-memory listing and, when slapd is installed, of 100,000
#    against a private slapd holding 100,000 users (tests/harness/ldap): wall time, peak RSS.
# Environment: ROUNDS (3), DURATION (10s), LOGINS (200), JB_TEST_PG, JB_BENCH_REDIS,
#   JB_BENCH_SLAPD (1; 0 skips the slapd case), BENCH_ONLY (comma-separated among verify,
#   login, saml for bench.py; default all), e.g. BENCH_ONLY=saml.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_deps
apt_install wrk python3 openssl
(cd tests/harness/oidc-provider && npm ci --silent --no-audit --no-fund >/dev/null)
bash tests/harness/saml-idp/setup.sh
log "building release binaries"
cargo build --release --locked --bin jitbridge --example plain_actix --example verify_server --example login_driver --example saml_login_driver --example saml_acs_bench --example sweep_bench

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# sweep_case LABEL EXPECT ARGS...: ROUNDS runs of sweep_bench ARGS (each with a fresh SQLite DB);
# every run must print EXPECT (the outcome and counts), so a failed listing is never a figure.
sweep_case() {
    local label="$1" expect="$2" out r walls=() rss=()
    shift 2
    for ((r = 1; r <= ${ROUNDS:-3}; r++)); do
        out=$("$CARGO_TARGET_DIR/release/examples/sweep_bench" "$@")
        echo "  round $r $out"
        if [[ "$out" != *"$expect"* ]]; then
            echo "error: expected \"$expect\" in the sweep_bench output" >&2
            exit 1
        fi
        walls+=("$(sed -n 's/.* wall \([0-9.]*\)s.*/\1/p' <<<"$out")")
        rss+=("$(sed -n 's/.* peak RSS \([0-9]*\) MiB.*/\1/p' <<<"$out")")
    done
    SWEEP_SUMMARY+="$(printf '%-44s %8s s %8s MiB' "$label" "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${rss[@]}" | median)")"$'\n'
}

sweep_ldap_stop() { tests/harness/ldap/stop.sh "$SWEEP_LDAP_DIR" || true; rm -rf "$SWEEP_LDAP_DIR"; }

sweep_bench() {
    SWEEP_SUMMARY=""
    log "sweeper: one reconcile per run, ${ROUNDS:-3} runs per case"
    sweep_case "100,000 accounts, in-memory listing" "99500 listed, outcome Applied, marked missing 500, disabled 0," 100000 memory
    sweep_case "1,000,000 accounts, in-memory listing" "995000 listed, outcome Applied, marked missing 5000, disabled 0," 1000000 memory
    if [ "${JB_BENCH_SLAPD:-1}" = 0 ]; then
        log "sweeper: slapd case skipped (JB_BENCH_SLAPD=0)"
    elif ! [ -x "${SLAPD_BIN:-/usr/sbin/slapd}" ] || ! command -v ldapwhoami >/dev/null; then
        log "sweeper: slapd case skipped (slapd or ldap-utils not installed)"
    else
        local port
        SWEEP_LDAP_DIR=$(mktemp -d /tmp/jb-bench-ldap.XXXXXX)
        trap sweep_ldap_stop EXIT
        tests/harness/ldap/bulk.sh "$SWEEP_LDAP_DIR" 100000
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        tests/harness/ldap/start.sh "$SWEEP_LDAP_DIR" "$port" >/dev/null
        sweep_case "100,000 accounts, slapd listing (100,000)" "100000 listed, outcome Applied, marked missing 0, disabled 0," 100000 ldap "ldap://127.0.0.1:$port"
        sweep_ldap_stop
        trap - EXIT
    fi
    printf '\n== deprovisioning sweeper, one reconcile, medians of %s runs\n%-44s %10s %12s\n%s\n' \
        "${ROUNDS:-3}" "case" "wall" "peak RSS" "$SWEEP_SUMMARY"
}
sweep_bench

# The SAML ACS in-process, stage by stage (examples/saml_acs_bench): thread CPU medians of
# LOGINS first and LOGINS repeat logins, SQLite and PostgreSQL, signed and signed+encrypted.
acs_bench() {
    local pg="${JB_TEST_PG:-postgres://postgres@127.0.0.1:5432}" db="jb_acs_bench_$$" enc
    log "SAML ACS in-process: parse + verify + map + provision + session"
    for enc in "" encrypt; do
        rm -f /tmp/jb-acs-bench.db /tmp/jb-acs-bench.db-*
        "$CARGO_TARGET_DIR/release/examples/saml_acs_bench" sqlite:///tmp/jb-acs-bench.db "${LOGINS:-200}" $enc
        rm -f /tmp/jb-acs-bench.db /tmp/jb-acs-bench.db-*
        psql "$pg/test" -qc "CREATE DATABASE $db"
        "$CARGO_TARGET_DIR/release/examples/saml_acs_bench" "$pg/$db" "${LOGINS:-200}" $enc
        psql "$pg/test" -qc "DROP DATABASE $db WITH (FORCE)"
    done
}
if [ -z "${BENCH_ONLY:-}" ] || [[ ",$BENCH_ONLY," == *,saml,* ]]; then acs_bench; fi

exec python3 bench/bench.py "$CARGO_TARGET_DIR/release"
