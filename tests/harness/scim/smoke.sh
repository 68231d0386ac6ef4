#!/usr/bin/env bash
# Smoke test for the SCIM harness: starts server.py on an ephemeral port and checks,
# with curl and jq, every behaviour README.md documents (auth, create, list paging,
# filters, PATCH/PUT/DELETE, errors, count clamping, seeding). Exits non-zero on the
# first failing check and always stops the server it started.
#
# Needs: setup.sh done, curl, jq, python3. Optional: SMOKE_SEED=N (default 1200)
# users seeded for the paging checks (must be > 1000 for the count-clamp check).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
LOG="$WORK/server.log"
SERVER_PID=""
TOKEN="smoke-token-$RANDOM$RANDOM"
SEED_N="${SMOKE_SEED:-1200}"

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
for bin in curl jq python3; do command -v "$bin" >/dev/null || fail "missing tool: $bin"; done
[[ -x "$HERE/.venv/bin/python" ]] || fail "run $HERE/setup.sh first"

# req METHOD PATH [BODY] -> sets STATUS and BODY (file $WORK/body)
req() {
  local method=$1 path=$2 data=${3-}
  local args=(-s -o "$WORK/body" -w '%{http_code}' -X "$method"
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/scim+json')
  [[ -n "$data" ]] && args+=(--data-binary "$data")
  STATUS=$(curl "${args[@]}" "$BASE$path")
  BODY=$(cat "$WORK/body")
}
expect() { [[ "$STATUS" == "$1" ]] || fail "$2: expected HTTP $1, got $STATUS: $BODY"; }
jqe() { jq -e "$1" <<<"$BODY" >/dev/null || fail "$2: jq '$1' false on: $BODY"; }

user_json() { # userName externalId [active]
  local active=${3-}
  jq -cn --arg u "$1" --arg e "$2" --arg a "$active" '{
    schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
    userName: $u, externalId: $e,
    name: {givenName: "Given", familyName: "Family"},
    emails: [{value: $u, type: "work", primary: true}]
  } + (if $a == "" then {} else {active: ($a == "true")} end)'
}

# ---------------------------------------------------------------------------
step "start server.py"
coproc SRV { SCIM_TOKEN="$TOKEN" exec "$HERE/start.sh" 0 2>"$LOG"; }
SERVER_PID=$SRV_PID
SRV_OUT=${SRV[0]}
READY=""
read -r -t 30 -u "$SRV_OUT" READY || fail "no ready line"
[[ "$READY" =~ ^ready\ (http://127\.0\.0\.1:[0-9]+/v2)$ ]] || fail "bad ready line: $READY"
BASE=${BASH_REMATCH[1]}
echo "ready line: $READY"

step "auth"
STATUS=$(curl -s -o "$WORK/body" -w '%{http_code}' "$BASE/Users"); BODY=$(cat "$WORK/body")
expect 401 "no token"
jqe '.schemas == ["urn:ietf:params:scim:api:messages:2.0:Error"] and .status == "401"' "401 body"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "$BASE/Users")
[[ $STATUS == 401 ]] || fail "wrong token: $STATUS"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/ServiceProviderConfig")
[[ $STATUS == 401 ]] || fail "ServiceProviderConfig without token: $STATUS"
req GET /ServiceProviderConfig; expect 200 "ServiceProviderConfig"
jqe '.filter.supported and .filter.maxResults == 1000 and .bulk.maxOperations == 1000 and (.pagination == null)' "SPC"

step "empty list"
req GET '/Users?startIndex=1&count=10'; expect 200 "empty list"
jqe '.totalResults == 0 and .itemsPerPage == 0 and .startIndex == 1 and .Resources == []' "empty list"

step "create"
req POST /Users "$(user_json alice@example.com ext-alice true)"; expect 201 "create alice"
jqe '.id and .userName == "alice@example.com" and .externalId == "ext-alice" and .active == true and .meta.version' "alice"
ALICE=$(jq -r .id <<<"$BODY")
req POST /Users "$(user_json bob@example.com ext-bob)"; expect 201 "create bob (no active)"
jqe 'has("active") | not' "active absent stays absent"
BOB=$(jq -r .id <<<"$BODY")
req POST /Users "$(user_json carol@example.com ext-carol false)"; expect 201 "create carol"
CAROL=$(jq -r .id <<<"$BODY")
req POST /Users "$(user_json ALICE@example.com ext-dup true)"; expect 409 "duplicate userName (case-insensitive)"
jqe '.scimType == "uniqueness" and .status == "409"' "409 body"
req POST /Users '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}'; expect 400 "missing userName"
jqe '.scimType == "invalidValue"' "400 body"
req POST /Users '{'; expect 400 "bad JSON"; jqe '.scimType == "invalidSyntax"' "bad JSON body"

step "list + paging"
req GET '/Users?startIndex=1&count=2'; expect 200 "page 1"
jqe '.totalResults == 3 and .itemsPerPage == 2 and .startIndex == 1 and (.Resources|length) == 2' "page 1"
jqe '.schemas == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]' "ListResponse schema"
req GET '/Users?startIndex=3&count=2'; expect 200 "last page"
jqe '.totalResults == 3 and .itemsPerPage == 1 and .startIndex == 3' "last page"
req GET '/Users?startIndex=4&count=2'; expect 200 "past end"
jqe '.totalResults == 3 and .itemsPerPage == 0 and .startIndex == 4 and .Resources == []' "past end"
req GET '/Users?startIndex=0&count=1'; jqe '.startIndex == 1 and .itemsPerPage == 1' "startIndex 0 -> 1"
req GET '/Users?count=-3'; jqe '.itemsPerPage == 0 and .totalResults == 3' "negative count -> 0"
req GET '/Users?count=abc'; expect 400 "count=abc"

step "filters"
req GET '/Users?filter=active%20eq%20true'; jqe '.totalResults == 1 and .Resources[0].id == "'"$ALICE"'"' "active eq true"
req GET '/Users?filter=active%20eq%20false'; jqe '.totalResults == 1 and .Resources[0].id == "'"$CAROL"'"' "active eq false"
req GET '/Users?filter=not%20(active%20eq%20true)'; jqe '.totalResults == 2' "not (active eq true) includes absent"
req GET '/Users?filter=externalId%20eq%20%22ext-bob%22'; jqe '.totalResults == 1 and .Resources[0].id == "'"$BOB"'"' "externalId eq"
req GET '/Users?filter=externalId%20eq%20%22EXT-BOB%22'; jqe '.totalResults == 0' "externalId is caseExact"
req GET '/Users?filter=userName%20eq%20%22BOB@EXAMPLE.COM%22'; jqe '.totalResults == 1' "userName is case-insensitive"
req GET '/Users?filter=active%20eq'; expect 400 "bad filter"; jqe '.scimType == "invalidFilter"' "invalidFilter"

step "PATCH / PUT / DELETE"
PATCH_OFF='{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}'
req PATCH "/Users/$ALICE" "$PATCH_OFF"; expect 204 "PATCH without attributes -> 204"
[[ -z "$BODY" ]] || fail "204 with body: $BODY"
req PATCH "/Users/$ALICE?attributes=active" '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":true}}]}'
expect 200 "PATCH with attributes -> 200"; jqe '.active == true' "PATCH no-path form"
req PATCH "/Users/$ALICE" "$PATCH_OFF"; expect 204 "PATCH off again"
req GET "/Users/$ALICE"; expect 200 "GET alice"; jqe '.active == false' "alice deactivated"
req PUT "/Users/$BOB" "$(user_json bob@example.com ext-bob false)"; expect 200 "PUT bob"
jqe '.active == false and .externalId == "ext-bob"' "PUT bob"
req DELETE "/Users/$CAROL"; expect 204 "DELETE carol"
req DELETE "/Users/$CAROL"; expect 404 "DELETE twice"; jqe '.status == "404"' "404 body"
req GET "/Users/$CAROL"; expect 404 "GET deleted"
req PATCH /Users/nope "$PATCH_OFF"; expect 404 "PATCH unknown id"
req DELETE /Users; expect 405 "DELETE collection"
req GET '/Users?filter=active%20eq%20true'; jqe '.totalResults == 0' "nobody active now"

step "seed $SEED_N users with seed.py (bulk)"
SUMMARY=$(python3 "$HERE/seed.py" "$BASE" "$TOKEN" "$SEED_N" --inactive-every 10)
echo "seed.py: $SUMMARY"
jq -e --argjson n "$SEED_N" '.created == $n and .failed == 0' <<<"$SUMMARY" >/dev/null || fail "seed"
TOTAL=$((SEED_N + 2))

step "count above the maximum is clamped to 1000"
req GET '/Users?startIndex=1&count=5000'; expect 200 "count=5000"
jqe ".totalResults == $TOTAL and .itemsPerPage == ([${TOTAL}, 1000] | min)" "clamp"
req GET '/Users'; jqe ".itemsPerPage == ([${TOTAL}, 1000] | min)" "no count -> up to 1000"

step "walk every page (count=100) and check each resource"
SI=1; SEEN=0; PAGES=0
: >"$WORK/ids"
while :; do
  req GET "/Users?startIndex=$SI&count=100"; expect 200 "page at $SI"
  jqe ".startIndex == $SI and .totalResults == $TOTAL and .itemsPerPage == (.Resources|length)" "page at $SI"
  jqe '[.Resources[] | has("id") and has("userName") and has("externalId") and has("active")] | all' \
    "resources at $SI have id, userName, externalId, active"
  jq -r '.Resources[].id' <<<"$BODY" >>"$WORK/ids"
  N=$(jq .itemsPerPage <<<"$BODY"); PAGES=$((PAGES + 1)); SEEN=$((SEEN + N)); SI=$((SI + N))
  [[ $N -eq 0 || $SI -gt $TOTAL ]] && break
done
[[ $SEEN -eq $TOTAL ]] || fail "walked $SEEN of $TOTAL"
[[ $(sort -u "$WORK/ids" | wc -l) -eq $TOTAL ]] || fail "duplicate ids while paging"
echo "walked $PAGES pages, $SEEN users"
req GET "/Users?filter=active%20eq%20false&count=0"
jqe ".totalResults == $((SEED_N / 10 + 2)) and .itemsPerPage == 0" "inactive count"

step "stdin EOF stops the server"
eval "exec ${SRV[1]}>&-"
for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SERVER_PID" 2>/dev/null && fail "server still running after stdin EOF"
wait "$SERVER_PID" 2>/dev/null && RC=0 || RC=$?
[[ $RC -eq 0 ]] || fail "server exit code $RC after EOF"
SERVER_PID=""
echo "SMOKE OK"
