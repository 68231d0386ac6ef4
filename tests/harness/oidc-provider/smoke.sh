#!/usr/bin/env bash
# Smoke test for the oidc-provider harness: scripts a full OIDC authorization code
# login (PKCE S256, state, nonce) with curl only, then repeats it with tamper mode
# `wrong_iss`. Exits non-zero on the first failing step.
#
# Needs: node (>= 20), npm dependencies installed (npm ci), curl, jq, openssl.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
LOG="$WORK/op.log"
SERVER_PID=""
SERVER_IN=""

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 ]]; then
    echo "--- server log (stderr) ---" >&2
    cat "$LOG" >&2 2>/dev/null || true
    echo "SMOKE FAILED (exit $rc)" >&2
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

for bin in node curl jq openssl; do
  command -v "$bin" >/dev/null || fail "missing tool: $bin"
done
[[ -d "$HERE/node_modules/oidc-provider" ]] || fail "run 'npm ci' in $HERE first"

CLIENT_ID="smoke-client"
CLIENT_SECRET="smoke-secret-with-enough-entropy"
REDIRECT_URI="http://127.0.0.1:9/cb"

export OP_PORT=0
export OP_CLIENTS='[{"client_id":"'"$CLIENT_ID"'","client_secret":"'"$CLIENT_SECRET"'","redirect_uris":["'"$REDIRECT_URI"'"],"post_logout_redirect_uris":["http://127.0.0.1:9/logged-out"]}]'
export OP_ACCOUNTS='{"alice":{"email":"alice@example.com","email_verified":true,"given_name":"Alice","family_name":"Liddell","preferred_username":"alice","groups":["staff","admins"],"department":"R&D"}}'

# ---------------------------------------------------------------------------
step "start server.mjs"
# coproc gives the server a stdin pipe that stays open (it exits when stdin closes)
# and lets us read its single stdout line.
# (bash unsets the coproc variables once it exits, so keep copies.)
coproc OP { exec node "$HERE/server.mjs" 2>"$LOG"; }
SERVER_PID=$OP_PID
SERVER_OUT=${OP[0]}
SERVER_IN=${OP[1]}
READY=""
read -r -t 20 -u "$SERVER_OUT" READY || fail "server did not print its ready line"
echo "ready line: $READY"
ISSUER="$(jq -er .issuer <<<"$READY")" || fail "ready line has no issuer"
PORT="$(jq -er .port <<<"$READY")" || fail "ready line has no port"
[[ "$ISSUER" == "http://127.0.0.1:$PORT" ]] || fail "issuer/port mismatch"

# ---------------------------------------------------------------------------
# helpers
b64url_decode() {
  local s="${1//-/+}"
  s="${s//_//}"
  case $(( ${#s} % 4 )) in
    2) s="$s==" ;;
    3) s="$s=" ;;
  esac
  printf '%s' "$s" | openssl base64 -d -A
}
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# http METHOD URL JAR [curl args...] -> sets STATUS, LOCATION, BODY_FILE
BODY_FILE="$WORK/body"
HDR_FILE="$WORK/headers"
http() {
  local method=$1 url=$2 jar=$3
  shift 3
  STATUS=$(curl -sS -X "$method" -o "$BODY_FILE" -D "$HDR_FILE" -w '%{http_code}' \
    -b "$jar" -c "$jar" "$@" "$url") || fail "curl $method $url failed"
  LOCATION=$(grep -i '^location:' "$HDR_FILE" | head -n1 | sed -e 's/^[Ll]ocation: *//' | tr -d '\r' || true)
  if [[ -n "$LOCATION" && "$LOCATION" == /* ]]; then
    LOCATION="$ISSUER$LOCATION"
  fi
  echo "   $method ${url%%\?*} -> $STATUS${LOCATION:+ Location: ${LOCATION%%\?*}}"
}
query_param() { # query_param URL NAME
  local url=$1 name=$2
  node -e 'const v=new URL(process.argv[1]).searchParams.get(process.argv[2]); if(v===null) process.exit(3); process.stdout.write(v)' "$url" "$name"
}

# ---------------------------------------------------------------------------
step "discovery"
http GET "$ISSUER/.well-known/openid-configuration" "$WORK/nojar"
[[ "$STATUS" == 200 ]] || fail "discovery status $STATUS"
DISCO="$(cat "$BODY_FILE")"
AUTH_EP=$(jq -er .authorization_endpoint <<<"$DISCO")
TOKEN_EP=$(jq -er .token_endpoint <<<"$DISCO")
USERINFO_EP=$(jq -er .userinfo_endpoint <<<"$DISCO")
JWKS_URI=$(jq -er .jwks_uri <<<"$DISCO")
[[ "$(jq -r .issuer <<<"$DISCO")" == "$ISSUER" ]] || fail "discovery issuer mismatch"
[[ "$(jq -r .authorization_response_iss_parameter_supported <<<"$DISCO")" == true ]] \
  || fail "authorization_response_iss_parameter_supported not true"
jq -c '{issuer, authorization_endpoint, token_endpoint, userinfo_endpoint, jwks_uri, end_session_endpoint,
        authorization_response_iss_parameter_supported, code_challenge_methods_supported, scopes_supported}' <<<"$DISCO"

http GET "$JWKS_URI" "$WORK/nojar"
[[ "$STATUS" == 200 ]] || fail "jwks status $STATUS"
echo "   jwks kids: $(jq -c '[.keys[].kid]' "$BODY_FILE")"

# ---------------------------------------------------------------------------
# login ROUND_NAME -> sets ID_TOKEN, ACCESS_TOKEN, TOKEN_RESPONSE
login() {
  local round=$1
  local jar="$WORK/jar-$round"
  : >"$jar"

  local verifier challenge state nonce
  verifier=$(openssl rand 32 | b64url)
  challenge=$(printf '%s' "$verifier" | openssl dgst -sha256 -binary | b64url)
  state=$(openssl rand -hex 12)
  nonce=$(openssl rand -hex 12)

  step "[$round] authorization request (PKCE S256, state, nonce)"
  http GET "$AUTH_EP" "$jar" -G \
    --data-urlencode "client_id=$CLIENT_ID" \
    --data-urlencode "redirect_uri=$REDIRECT_URI" \
    --data-urlencode "response_type=code" \
    --data-urlencode "scope=openid email profile groups" \
    --data-urlencode "state=$state" \
    --data-urlencode "nonce=$nonce" \
    --data-urlencode "code_challenge=$challenge" \
    --data-urlencode "code_challenge_method=S256"
  [[ "$STATUS" == 303 ]] || fail "expected 303 from authorization endpoint, got $STATUS: $(head -c 400 "$BODY_FILE")"
  [[ "$LOCATION" == "$ISSUER/interaction/"* ]] || fail "expected redirect to /interaction/, got $LOCATION"
  local interaction_url=$LOCATION
  local uid=${interaction_url#"$ISSUER/interaction/"}

  step "[$round] interaction page"
  http GET "$interaction_url" "$jar"
  [[ "$STATUS" == 200 ]] || fail "interaction page status $STATUS"
  grep -q "action=\"/interaction/$uid/login\"" "$BODY_FILE" || fail "login form not found"
  grep -q 'name="login"' "$BODY_FILE" || fail "login field not found"

  step "[$round] unknown account is rejected"
  http POST "$interaction_url/login" "$jar" --data-urlencode "login=mallory" --data-urlencode "password=x"
  [[ "$STATUS" == 400 ]] || fail "expected 400 for unknown account, got $STATUS"

  step "[$round] login as alice"
  http POST "$interaction_url/login" "$jar" --data-urlencode "login=alice" --data-urlencode "password=whatever"
  [[ "$STATUS" == 303 ]] || fail "expected 303 after login, got $STATUS: $(head -c 400 "$BODY_FILE")"

  step "[$round] follow redirects until the redirect_uri"
  local hops=0
  while [[ "$LOCATION" != "$REDIRECT_URI"* ]]; do
    hops=$((hops + 1))
    (( hops <= 10 )) || fail "too many redirects"
    [[ -n "$LOCATION" ]] || fail "no Location header (status $STATUS): $(head -c 400 "$BODY_FILE")"
    [[ "$LOCATION" == "$ISSUER"* ]] || fail "unexpected redirect target $LOCATION"
    http GET "$LOCATION" "$jar"
  done
  local cb=$LOCATION
  echo "   callback: $cb"
  local code iss got_state
  code=$(query_param "$cb" code) || fail "no code in callback: $(query_param "$cb" error_description || true)"
  got_state=$(query_param "$cb" state) || fail "no state in callback"
  [[ "$got_state" == "$state" ]] || fail "state mismatch"
  iss=$(query_param "$cb" iss) || fail "no iss in callback (RFC 9207)"
  [[ "$iss" == "$ISSUER" ]] || fail "iss in callback is $iss, expected $ISSUER"
  echo "   code=${code:0:12}... state ok, iss=$iss"

  step "[$round] token request (client_secret_basic + code_verifier)"
  http POST "$TOKEN_EP" "$jar" -u "$CLIENT_ID:$CLIENT_SECRET" \
    --data-urlencode "grant_type=authorization_code" \
    --data-urlencode "code=$code" \
    --data-urlencode "redirect_uri=$REDIRECT_URI" \
    --data-urlencode "code_verifier=$verifier"
  [[ "$STATUS" == 200 ]] || fail "token endpoint status $STATUS: $(cat "$BODY_FILE")"
  TOKEN_RESPONSE=$(cat "$BODY_FILE")
  ID_TOKEN=$(jq -er .id_token <<<"$TOKEN_RESPONSE") || fail "no id_token"
  ACCESS_TOKEN=$(jq -er .access_token <<<"$TOKEN_RESPONSE") || fail "no access_token"
  jq -c '{token_type, expires_in, scope, has_refresh_token: (has("refresh_token"))}' <<<"$TOKEN_RESPONSE"

  ID_HEADER=$(b64url_decode "$(cut -d. -f1 <<<"$ID_TOKEN")")
  ID_PAYLOAD=$(b64url_decode "$(cut -d. -f2 <<<"$ID_TOKEN")")
  echo "   id_token header:  $(jq -c . <<<"$ID_HEADER")"
  echo "   id_token payload:"
  jq . <<<"$ID_PAYLOAD" | sed 's/^/     /'
  [[ "$(jq -r .nonce <<<"$ID_PAYLOAD")" == "$nonce" ]] || fail "nonce mismatch in ID token"
  [[ "$(jq -r .sub <<<"$ID_PAYLOAD")" == alice ]] || fail "sub is not alice"
  [[ "$(jq -r .aud <<<"$ID_PAYLOAD")" == "$CLIENT_ID" ]] || fail "aud mismatch"
  [[ "$(jq -r .email <<<"$ID_PAYLOAD")" == alice@example.com ]] || fail "email claim missing from ID token"
  [[ "$(jq -c .groups <<<"$ID_PAYLOAD")" == '["staff","admins"]' ]] || fail "groups claim missing from ID token"

  step "[$round] userinfo"
  http GET "$USERINFO_EP" "$WORK/nojar" -H "Authorization: Bearer $ACCESS_TOKEN"
  [[ "$STATUS" == 200 ]] || fail "userinfo status $STATUS: $(cat "$BODY_FILE")"
  echo "   userinfo: $(jq -c . "$BODY_FILE")"
  [[ "$(jq -r .sub "$BODY_FILE")" == alice ]] || fail "userinfo sub is not alice"
  [[ "$(jq -r .department "$BODY_FILE")" == 'R&D' ]] || fail "userinfo department missing"
}

# verify_rs256 JWT PEM_FILE -> exit 0 if the RS256 signature verifies
verify_rs256() {
  local jwt=$1 pem=$2
  local sig="$WORK/sig.bin"
  b64url_decode "$(cut -d. -f3 <<<"$jwt")" >"$sig"
  printf '%s' "$(cut -d. -f1-2 <<<"$jwt")" | openssl dgst -sha256 -verify "$pem" -signature "$sig" >/dev/null
}

curl -sSf "$ISSUER/__admin/keys" | jq -r .k1_public_pem >"$WORK/k1.pem" || fail "GET /__admin/keys"

# ---------------------------------------------------------------------------
login genuine
[[ "$(jq -r .iss <<<"$ID_PAYLOAD")" == "$ISSUER" ]] || fail "genuine iss mismatch"
[[ "$(jq -r .kid <<<"$ID_HEADER")" == k1 ]] || fail "genuine kid is not k1"
verify_rs256 "$ID_TOKEN" "$WORK/k1.pem" || fail "genuine ID token does not verify with k1"
echo "   genuine ID token verifies with k1 (openssl)"

# ---------------------------------------------------------------------------
step "set tamper mode wrong_iss"
curl -sSf -X PUT "$ISSUER/__admin/tamper" -H 'content-type: application/json' -d '{"mode":"wrong_iss"}' >/dev/null \
  || fail "PUT /__admin/tamper"
MODE=$(curl -sSf "$ISSUER/__admin/tamper" | jq -r .mode)
[[ "$MODE" == wrong_iss ]] || fail "tamper mode is $MODE"
echo "   tamper mode: $MODE"

login tampered
FORGED_ISS=$(jq -r .iss <<<"$ID_PAYLOAD")
echo "   forged iss: $FORGED_ISS"
[[ "$FORGED_ISS" == "http://evil.example" ]] || fail "expected forged iss http://evil.example, got $FORGED_ISS"
verify_rs256 "$ID_TOKEN" "$WORK/k1.pem" || fail "forged ID token is not re-signed with k1"
echo "   forged ID token is validly signed by k1 (only the iss check can catch it)"

curl -sSf -X PUT "$ISSUER/__admin/tamper" -H 'content-type: application/json' -d '{"mode":"none"}' >/dev/null \
  || fail "reset tamper mode"

# ---------------------------------------------------------------------------
step "stop server (close its stdin)"
eval "exec ${SERVER_IN}>&-"
for _ in $(seq 1 50); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then fail "server did not exit after stdin closed"; fi
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
echo "SMOKE OK"
