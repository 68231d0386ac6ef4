#!/usr/bin/env bash
# Smoke test for the SAML IdP harness. Plays the SP with curl (and smoke-helper.cjs to
# build/sign SP messages and to verify/decrypt the IdP's), against two IdP processes:
#   A: unsigned SP messages, no encryption. Metadata, scripted form login, SSO reuse,
#      the `login=` shortcut, SP- and IdP-initiated SLO (HTTP-Redirect), admin config
#      (Response-only signing with rsa-sha1).
#   B: SAML_SP_CERT (SP messages must be signed) + SAML_SP_ENCRYPTION_CERT (encrypted
#      assertions, decrypted here with the SP key).
# Prints the decoded SAMLResponse XML. Exits non-zero on the first failing check.
#
# Needs: setup.sh done (node_modules), node >= 20, curl, jq, openssl.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELPER="$HERE/smoke-helper.cjs"
WORK="$(mktemp -d)"
LOG="$WORK/idp.log"
SERVER_PID=""

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
helper() { node "$HELPER" "$@"; }
for bin in node curl jq openssl; do command -v "$bin" >/dev/null || fail "missing tool: $bin"; done
[[ -d "$HERE/node_modules/samlp" ]] || fail "run $HERE/setup.sh first"

SP_ENTITY_ID="https://sp.example.test/saml/metadata"
SP_ACS_URL="http://127.0.0.1:9/saml/acs"
SP_SLO_URL="http://127.0.0.1:9/saml/slo"

step "throwaway keys (openssl)"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 1 -subj "/CN=smoke-idp" \
  -keyout "$WORK/idp.key" -out "$WORK/idp.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 1 -subj "/CN=smoke-sp" \
  -keyout "$WORK/sp.key" -out "$WORK/sp.crt" 2>/dev/null
IDP_CERT_B64=$(grep -v -- '-----' "$WORK/idp.crt" | tr -d '\n')

# start_idp NAME [VAR=value...] -> BASE, READY; server stdin stays open via the coproc
start_idp() {
  local name=$1
  shift
  : >"$LOG"
  coproc IDP { exec env SAML_IDP_KEY="$WORK/idp.key" SAML_IDP_CERT="$WORK/idp.crt" \
    SAML_SP_ENTITY_ID="$SP_ENTITY_ID" SAML_SP_ACS_URL="$SP_ACS_URL" SAML_SP_SLO_URL="$SP_SLO_URL" \
    SAML_IDP_ACCESS_LOG=1 "$@" "$HERE/start.sh" 0 2>"$LOG"; }
  SERVER_PID=$IDP_PID
  SERVER_OUT=${IDP[0]}
  SERVER_IN=${IDP[1]}
  READY=""
  read -r -t 20 -u "$SERVER_OUT" READY || fail "[$name] no ready line"
  echo "   ready line: $READY"
  jq -e '.ready == true' <<<"$READY" >/dev/null || fail "bad ready line"
  BASE=$(jq -r .base_url <<<"$READY")
  [[ "$BASE" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || fail "bad base_url $BASE"
  [[ "$(jq -r .entity_id <<<"$READY")" == "$BASE/metadata" ]] || fail "entity_id"
  [[ "$(jq -r .sso_url <<<"$READY")" == "$BASE/saml/sso" ]] || fail "sso_url"
  [[ "$(jq -r .slo_url <<<"$READY")" == "$BASE/saml/slo" ]] || fail "slo_url"
}

stop_idp_stdin() {
  eval "exec ${SERVER_IN}>&-"
  for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "server still running after stdin EOF"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# http METHOD URL JAR [curl args...] -> STATUS, LOCATION, body in $BODY
BODY="$WORK/body"
http() {
  local method=$1 url=$2 jar=$3
  shift 3
  STATUS=$(curl -sS -X "$method" -o "$BODY" -D "$WORK/headers" -w '%{http_code}' \
    -b "$jar" -c "$jar" "$@" "$url") || fail "curl $method $url failed"
  LOCATION=$(grep -i '^location:' "$WORK/headers" | head -n1 | sed -e 's/^[Ll]ocation: *//' | tr -d '\r' || true)
  echo "   $method ${url%%\?*} -> $STATUS${LOCATION:+ Location: ${LOCATION%%\?*}}"
}

# authn_query ID RELAY_STATE [SP_KEY] [force] -> query string for GET /saml/sso
authn_query() {
  local req
  req=$(helper authn-request "$SP_ENTITY_ID" "$SP_ACS_URL" "$BASE/saml/sso" "$1" "${4:-}")
  helper redirect-query SAMLRequest "$req" "$2" ${3:+"$3"}
}

# expect_post_form -> SAML_RESPONSE, RELAY_STATE from the auto-submit form in $BODY
expect_post_form() {
  [[ "$STATUS" == 200 ]] || fail "expected 200 auto-post form, got $STATUS: $(head -c 300 "$BODY")"
  local form
  form=$(helper form "$BODY")
  [[ "$(jq -r .action <<<"$form")" == "$SP_ACS_URL" ]] || fail "form action is not the ACS URL: $form"
  [[ "$(jq -r .method <<<"$form")" == post ]] || fail "form method is not post"
  SAML_RESPONSE=$(jq -er .fields.SAMLResponse <<<"$form") || fail "no SAMLResponse field"
  RELAY_STATE=$(jq -r .fields.RelayState <<<"$form")
}

# ===========================================================================
step "[A] start IdP (unsigned SP messages, no encryption)"
start_idp A

step "[A] metadata"
http GET "$BASE/metadata" "$WORK/nojar"
[[ "$STATUS" == 200 ]] || fail "metadata status $STATUS"
grep -q "entityID=\"$BASE/metadata\"" "$BODY" || fail "metadata entityID"
grep -q "<X509Certificate>$IDP_CERT_B64</X509Certificate>" "$BODY" || fail "metadata signing cert"
grep -q "<SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"$BASE/saml/sso\"/>" "$BODY" \
  || fail "metadata SSO Redirect endpoint"
grep -q "<SingleLogoutService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"$BASE/saml/slo\"/>" "$BODY" \
  || fail "metadata SLO Redirect endpoint"
sed -E 's/(<X509Certificate>.{40})[^<]*/\1.../' "$BODY" | sed 's/^/     /'
echo

step "[A] scripted login via the form (HTTP-Redirect AuthnRequest)"
JAR="$WORK/jar-browser"
: >"$JAR"
REQ_ID="_smoke-$(openssl rand -hex 8)"
RS_IN='relay/1 & "quoted"'
http GET "$BASE/saml/sso?$(authn_query "$REQ_ID" "$RS_IN")" "$JAR"
[[ "$STATUS" == 200 ]] || fail "expected login form, got $STATUS: $(cat "$BODY")"
FORM=$(helper form "$BODY")
echo "   login form: $FORM"
[[ "$(jq -r .action <<<"$FORM")" == /saml/sso/login ]] || fail "login form action"
TXN=$(jq -er .fields.txn <<<"$FORM") || fail "no txn field"
http POST "$BASE/saml/sso/login" "$JAR" --data-urlencode "txn=$TXN" --data-urlencode username=mallory --data-urlencode password=x
[[ "$STATUS" == 401 ]] || fail "unknown user: expected 401, got $STATUS"
http POST "$BASE/saml/sso/login" "$JAR" --data-urlencode "txn=$TXN" --data-urlencode username=alice --data-urlencode password=anything
expect_post_form
[[ "$RELAY_STATE" == "$RS_IN" ]] || fail "RelayState not echoed: [$RELAY_STATE]"
echo "   RelayState echoed: $RELAY_STATE"
SUMMARY=$(XML_OUT="$WORK/response.xml" helper check-response "$SAML_RESPONSE" "$WORK/idp.crt")
echo "   decoded SAMLResponse:"
sed 's/^/     /' "$WORK/response.xml"
echo "   summary: $(jq -c . <<<"$SUMMARY")"
jqs() { jq -e "$1" <<<"$SUMMARY" >/dev/null || fail "$2: jq '$1' false on $(jq -c . <<<"$SUMMARY")"; }
jqs '.response.in_response_to == "'"$REQ_ID"'" and .assertion.in_response_to == "'"$REQ_ID"'"' "InResponseTo"
jqs '.response.destination == "'"$SP_ACS_URL"'" and .assertion.recipient == "'"$SP_ACS_URL"'"' "Destination/Recipient"
jqs '.assertion.audiences == ["'"$SP_ENTITY_ID"'"]' "Audience"
jqs '.response.issuer == "'"$BASE/metadata"'" and .assertion.issuer == "'"$BASE/metadata"'"' "Issuer"
jqs '.response.status == "urn:oasis:names:tc:SAML:2.0:status:Success"' "Status"
jqs '.assertion.not_before != null and .assertion.not_on_or_after != null and .assertion.scd_not_on_or_after != null' "validity window"
jqs '(.assertion.session_index | startswith("_")) and .assertion.authn_instant != null' "AuthnStatement SessionIndex"
jqs '.response_signature.valid and .assertion_signature.valid' "both signatures valid"
jqs '.response_signature.signature_method == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" and .response_signature.digest_method == "http://www.w3.org/2001/04/xmlenc#sha256"' "rsa-sha256/sha256"
jqs '.assertion.name_id == "alice@example.com" and .assertion.name_id_format == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"' "NameID"
jqs '.assertion.attributes.groups.values == ["staff","admins"] and .assertion.attributes.sn.values == ["Liddell"] and .assertion.attributes.displayName.values == ["Alice Liddell"]' "attributes"
ALICE_SI=$(jq -r .assertion.session_index <<<"$SUMMARY")

step "[A] second AuthnRequest in the same jar: SSO, no form"
http GET "$BASE/saml/sso?$(authn_query "_sso2" "")" "$JAR"
expect_post_form
SUMMARY=$(helper check-response "$SAML_RESPONSE" "$WORK/idp.crt")
jqs '.assertion.name_id == "alice@example.com" and .response.in_response_to == "_sso2"' "SSO login"
ALICE_SI2=$(jq -r .assertion.session_index <<<"$SUMMARY")
[[ "$ALICE_SI2" != "$ALICE_SI" ]] || fail "SessionIndex reused"
http GET "$BASE/saml/sso?$(authn_query "_force" "" "" force)" "$JAR"
[[ "$STATUS" == 200 ]] && grep -q 'name="txn"' "$BODY" || fail "ForceAuthn did not show the login form"
echo "   ForceAuthn=\"true\" shows the login form again"

step "[A] login=bob shortcut (fresh jar, one request)"
http GET "$BASE/saml/sso?$(authn_query "_bob1" "rs-bob")&login=bob" "$WORK/jar-bob"
expect_post_form
SUMMARY=$(helper check-response "$SAML_RESPONSE" "$WORK/idp.crt")
jqs '.assertion.name_id == "bob@example.com" and .assertion.attributes.groups.values == ["staff"]' "bob"
BOB_SI=$(jq -r .assertion.session_index <<<"$SUMMARY")
http GET "$BASE/saml/sso?$(helper redirect-query SAMLRequest "$(helper authn-request https://unknown.example "$SP_ACS_URL" "$BASE/saml/sso" _x)" "")&login=bob" "$WORK/nojar"
[[ "$STATUS" == 400 ]] || fail "unknown SP issuer: expected 400, got $STATUS"
SESSIONS=$(curl -sSf "$BASE/__admin/sessions")
[[ "$(jq length <<<"$SESSIONS")" == 3 ]] || fail "expected 3 SP sessions: $SESSIONS"

step "[A] SP-initiated logout (bob): LogoutRequest -> LogoutResponse by redirect"
LR=$(helper logout-request "$SP_ENTITY_ID" "$BASE/saml/slo" bob@example.com "$BOB_SI" _lr-bob)
http GET "$BASE/saml/slo?$(helper redirect-query SAMLRequest "$LR" "rs-slo")" "$WORK/jar-bob"
[[ "$STATUS" == 302 ]] || fail "expected 302, got $STATUS: $(cat "$BODY")"
[[ "$LOCATION" == "$SP_SLO_URL?"* ]] || fail "LogoutResponse not sent to the SP SLO URL: $LOCATION"
S=$(XML_OUT="$WORK/lr.xml" helper check-redirect "$LOCATION" "$WORK/idp.crt")
sed 's/^/     /' "$WORK/lr.xml"
echo "   $(jq -c . <<<"$S")"
jq -e '.element == "LogoutResponse" and .in_response_to == "_lr-bob" and .relay_state == "rs-slo" and .signature_valid
  and .status == "urn:oasis:names:tc:SAML:2.0:status:Success" and .destination == "'"$SP_SLO_URL"'"' <<<"$S" >/dev/null \
  || fail "LogoutResponse"
curl -sSf "$BASE/__admin/sessions" | jq -e 'map(.login) == ["alice","alice"]' >/dev/null || fail "bob's session not ended"

step "[A] IdP-initiated logout (alice, both sessions): LogoutRequest(s) by redirect"
http GET "$BASE/saml/slo/init?nameId=alice@example.com" "$WORK/jar-admin"
SEEN=""
for round in 1 2 3; do
  [[ "$STATUS" == 302 && "$LOCATION" == "$SP_SLO_URL?"* ]] || fail "expected redirect to the SP SLO URL, got $STATUS $LOCATION"
  S=$(XML_OUT="$WORK/lreq.xml" helper check-redirect "$LOCATION" "$WORK/idp.crt")
  [[ $round == 1 ]] && sed 's/^/     /' "$WORK/lreq.xml"
  echo "   $(jq -c '{element, name_id, session_index, relay_state, signature_valid, destination}' <<<"$S")"
  jq -e '.element == "LogoutRequest" and .name_id == "alice@example.com" and .signature_valid' <<<"$S" >/dev/null || fail "LogoutRequest"
  SEEN="$SEEN $(jq -r .session_index <<<"$S")"
  RESP=$(helper logout-response "$SP_ENTITY_ID" "$BASE/saml/slo" "$(jq -r .id <<<"$S")" "_lresp$round")
  http GET "$BASE/saml/slo?$(helper redirect-query SAMLResponse "$RESP" "$(jq -r .relay_state <<<"$S")")" "$WORK/jar-sp"
  [[ "$STATUS" == 302 ]] || break
done
[[ "$STATUS" == 200 ]] || fail "expected 200 at the end of IdP-initiated logout, got $STATUS"
[[ "$SEEN" == *"$ALICE_SI"* && "$SEEN" == *"$ALICE_SI2"* ]] || fail "not both sessions logged out: $SEEN"
curl -sSf "$BASE/__admin/sessions" | jq -e 'length == 0' >/dev/null || fail "sessions left"

step "[A] admin config: sign the Response only, rsa-sha1/sha1"
curl -sSf -X PUT -H 'content-type: application/json' "$BASE/__admin/config" \
  -d '{"sign":"response","signature_algorithm":"rsa-sha1","digest_algorithm":"sha1"}' | jq -c '{sign, signature_algorithm, digest_algorithm}'
http GET "$BASE/saml/sso?$(authn_query "_sha1" "")&login=alice" "$WORK/nojar"
expect_post_form
SUMMARY=$(helper check-response "$SAML_RESPONSE" "$WORK/idp.crt")
jqs '.assertion_signature == null and .response_signature.valid' "Response-only signature"
jqs '.response_signature.signature_method == "http://www.w3.org/2000/09/xmldsig#rsa-sha1" and .response_signature.digest_method == "http://www.w3.org/2000/09/xmldsig#sha1"' "rsa-sha1"
echo "   $(jq -c '{response_signature, assertion_signature}' <<<"$SUMMARY")"

step "[A] stop (stdin EOF)"
stop_idp_stdin

# ===========================================================================
step "[B] start IdP with SAML_SP_CERT (signed SP messages) + SAML_SP_ENCRYPTION_CERT"
start_idp B SAML_SP_CERT="$WORK/sp.crt" SAML_SP_ENCRYPTION_CERT="$WORK/sp.crt"

step "[B] unsigned AuthnRequest is refused"
http GET "$BASE/saml/sso?$(authn_query "_unsigned" "")&login=alice" "$WORK/nojar"
[[ "$STATUS" == 400 ]] || fail "unsigned AuthnRequest: expected 400, got $STATUS"
echo "   $(cat "$BODY")"

step "[B] signed AuthnRequest -> encrypted assertion"
http GET "$BASE/saml/sso?$(authn_query "_enc" "rs-enc" "$WORK/sp.key")&login=alice" "$WORK/nojar"
expect_post_form
SUMMARY=$(XML_OUT="$WORK/response-enc.xml" helper check-response "$SAML_RESPONSE" "$WORK/idp.crt" "$WORK/sp.key")
echo "   decoded SAMLResponse (EncryptedAssertion, then the decrypted Assertion):"
sed 's/^/     /' "$WORK/response-enc.xml"
echo "   summary: $(jq -c '{response_signature: .response_signature.valid, encryption, assertion_signature: .assertion_signature.valid, name_id: .assertion.name_id}' <<<"$SUMMARY")"
jqs '.encryption.data_method == "http://www.w3.org/2009/xmlenc11#aes256-gcm" and .encryption.key_method == "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"' "encryption"
jqs '.response_signature.valid and .assertion_signature.valid and .assertion.in_response_to == "_enc"' "signed + encrypted"
ENC_SI=$(jq -r .assertion.session_index <<<"$SUMMARY")

step "[B] signed SP-initiated LogoutRequest"
LR=$(helper logout-request "$SP_ENTITY_ID" "$BASE/saml/slo" alice@example.com "$ENC_SI" _lr-enc)
http GET "$BASE/saml/slo?$(helper redirect-query SAMLRequest "$LR" "")" "$WORK/nojar"
[[ "$STATUS" == 400 ]] || fail "unsigned LogoutRequest for a known session: expected 400, got $STATUS"
http GET "$BASE/saml/slo?$(helper redirect-query SAMLRequest "$LR" "" "$WORK/sp.key")" "$WORK/nojar"
[[ "$STATUS" == 302 ]] || fail "signed LogoutRequest: expected 302, got $STATUS: $(cat "$BODY")"
helper check-redirect "$LOCATION" "$WORK/idp.crt" | jq -e '.in_response_to == "_lr-enc" and .signature_valid' >/dev/null || fail "LogoutResponse"
curl -sSf "$BASE/__admin/sessions" | jq -e 'length == 0' >/dev/null || fail "session not ended"

step "[B] stop (SIGTERM)"
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null && RC=0 || RC=$?
[[ $RC -eq 0 ]] || fail "exit code $RC after SIGTERM"
SERVER_PID=""
echo "SMOKE OK"
