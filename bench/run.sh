#!/usr/bin/env bash
# Benchmarks with printed figures (never timed tests). Measures, in one run on this machine:
#  - /auth/verify with a valid session, in-process and Redis sessions, next to a plain
#    actix-web handler (the ceiling): req/s, p50/p99 latency, server CPU per request (wrk -t2 -c64);
#  - bridge CPU per full JIT login (login + callback: code exchange, ID token validation,
#    userinfo, mapping, provisioning transaction, session) on SQLite and PostgreSQL, first
#    logins (account created) and repeat logins (account updated), against oidc-provider;
#  - the same for SP-initiated SAML logins (signed AuthnRequest; ACS: XML signature check
#    with libxmlsec1, mapping, provisioning, session) against the samlp IdP, with signed
#    and with signed+encrypted assertions.
# Environment: ROUNDS (3), DURATION (10s), LOGINS (200), JB_TEST_PG, JB_BENCH_REDIS,
# BENCH_ONLY (comma-separated among verify, login, saml; default all), e.g. BENCH_ONLY=saml.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_deps
apt_install wrk python3 openssl
(cd tests/harness/oidc-provider && npm ci --silent --no-audit --no-fund >/dev/null)
bash tests/harness/saml-idp/setup.sh
log "building release binaries"
cargo build --release --locked --bin jitbridge --example plain_actix --example verify_server --example login_driver --example saml_login_driver
exec python3 bench/bench.py "$CARGO_TARGET_DIR/release"
