#!/usr/bin/env python3
"""Verifies a jitbridge identity assertion the way an app would, with PyJWT.

usage: verify.py JWKS_URL ISSUER AUDIENCE < token
Fetches the JWK set from the bridge, picks the key by the token's kid, and checks the
signature (ES256 or EdDSA only), iss, aud, exp, nbf and iat. Prints one JSON line:
{"ok": true, "kid": ..., "alg": ..., "claims": {...}} and exits 0, or
{"ok": false, "error": "<exception class>: <message>"} and exits 1.
"""
import json
import sys

import jwt

ALGORITHMS = ["ES256", "EdDSA"]  # an allow-list: never take the algorithm from the token


def main() -> int:
    jwks_url, issuer, audience = sys.argv[1:4]
    token = sys.stdin.read().strip()
    try:
        client = jwt.PyJWKClient(jwks_url, cache_keys=False)
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            leeway=30,
            options={"require": ["iss", "aud", "sub", "exp", "nbf", "iat"]},
        )
        header = jwt.get_unverified_header(token)
    except Exception as e:  # noqa: BLE001 - the test reads the class name
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps({"ok": True, "kid": header.get("kid"), "alg": header.get("alg"), "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
