#!/usr/bin/env python3
"""Writes the template seeds of the `acs` fuzz target into fuzz/seeds/acs/.

Each seed is: mode byte, flags byte, body (see the header of fuzz_targets/acs.rs). Seeds that
start with `<` are plain SAML Response XML (mode X, flags 0). The signed `signed-*` seeds are
derived from the S/E templates by the fuzz target itself (JITBRIDGE_FUZZ_WRITE_SEEDS, see
fuzz/README.md), because they need the test IdP key and libxmlsec1.
"""

import base64
import os
import re
import urllib.parse
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "acs")

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"

ALGS = {
    "sha256": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmlenc#sha256"),
    "sha512": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", "http://www.w3.org/2001/04/xmlenc#sha512"),
    "sha1": ("http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2000/09/xmldsig#sha1"),
}


def sig_template(ref, alg="sha256", digest="", value="", tail=""):
    sm, dm = ALGS[alg]
    return (
        f'<ds:Signature xmlns:ds="{DS}"><ds:SignedInfo>'
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        f'<ds:SignatureMethod Algorithm="{sm}"/>'
        f'<ds:Reference URI="#{ref}"><ds:Transforms>'
        f'<ds:Transform Algorithm="{DS}enveloped-signature"/>'
        '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        f'</ds:Transforms><ds:DigestMethod Algorithm="{dm}"/>'
        f"<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
        f"<ds:SignatureValue>{value}</ds:SignatureValue>{tail}</ds:Signature>"
    )


def assertion(
    aid="_a1",
    signed=True,
    alg="sha256",
    name_id="alice@example.com",
    fmt=PERSISTENT,
    irt=' InResponseTo="_req1"',
    extra_attrs="",
    sig_tail="",
    advice="",
):
    sig = sig_template(aid, alg, tail=sig_tail) if signed else ""
    return (
        f'<saml:Assertion xmlns:saml="{SAML}" ID="{aid}" Version="2.0" IssueInstant="@NOW@">'
        f"<saml:Issuer>@IDP@</saml:Issuer>{sig}"
        f'<saml:Subject><saml:NameID Format="{fmt}">{name_id}</saml:NameID>'
        '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml:SubjectConfirmationData NotOnOrAfter="@LATER@" Recipient="@ACS@"{irt}/>'
        "</saml:SubjectConfirmation></saml:Subject>"
        '<saml:Conditions NotBefore="@PAST@" NotOnOrAfter="@LATER@"><saml:AudienceRestriction>'
        "<saml:Audience>@SP@</saml:Audience></saml:AudienceRestriction></saml:Conditions>"
        f"{advice}"
        '<saml:AuthnStatement AuthnInstant="@NOW@" SessionIndex="_s1" SessionNotOnOrAfter="@LATER@">'
        "<saml:AuthnContext><saml:AuthnContextClassRef>"
        "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        "</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"
        "<saml:AttributeStatement>"
        '<saml:Attribute Name="uid" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">'
        '<saml:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">alice</saml:AttributeValue>'
        "</saml:Attribute>"
        '<saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3" FriendlyName="mail">'
        "<saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute>"
        '<saml:Attribute Name="groups"><saml:AttributeValue>admins</saml:AttributeValue>'
        "<saml:AttributeValue>users</saml:AttributeValue></saml:Attribute>"
        f"{extra_attrs}</saml:AttributeStatement></saml:Assertion>"
    )


def response(
    body,
    signed=True,
    alg="sha256",
    irt=' InResponseTo="_req1"',
    status=f'<samlp:StatusCode Value="{SUCCESS}"/>',
    sig=None,
    ext="",
    sig_tail="",
):
    if sig is None:
        sig = sig_template("_resp1", alg, tail=sig_tail) if signed else ""
    return (
        f'<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_resp1" Version="2.0" '
        f'IssueInstant="@NOW@" Destination="@ACS@"{irt}>'
        f"<saml:Issuer>@IDP@</saml:Issuer>{sig}{ext}"
        f"<samlp:Status>{status}</samlp:Status>{body}</samlp:Response>"
    )


def concrete(xml):
    """A template with fixed values, for the raw (unsigned) seeds."""
    return (
        xml.replace("@NOW@", "2026-01-01T00:00:00Z")
        .replace("@LATER@", "2026-01-01T00:10:00Z")
        .replace("@PAST@", "2025-12-31T23:00:00Z")
        .replace("@ACS@", "https://sp.example.com/saml/fuzz/acs")
        .replace("@SLO@", "https://sp.example.com/saml/fuzz/slo")
        .replace("@SP@", "https://sp.example.com/saml/fuzz/metadata")
        .replace("@IDP@", "https://idp.example.com/metadata")
    )


def write(name, mode, flags, body):
    data = body.encode() if isinstance(body, str) else body
    if mode is not None:
        data = bytes([ord(mode), flags]) + data
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def logout_request(sig=""):
    return (
        f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_lr1" Version="2.0" '
        'IssueInstant="@NOW@" Destination="@SLO@" NotOnOrAfter="@LATER@">'
        f"<saml:Issuer>@IDP@</saml:Issuer>{sig}"
        f'<saml:NameID Format="{PERSISTENT}">alice&amp;bob@example.com</saml:NameID>'
        "<samlp:SessionIndex>_s1</samlp:SessionIndex><samlp:SessionIndex>_s2</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )


def logout_response():
    return (
        f'<samlp:LogoutResponse xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_lo1" Version="2.0" '
        'IssueInstant="@NOW@" Destination="@SLO@" InResponseTo="_req9">'
        "<saml:Issuer>@IDP@</saml:Issuer>"
        f'<samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status></samlp:LogoutResponse>'
    )


def deflate_b64(xml):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(xml.encode()) + c.flush()).decode()


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if not f.startswith("signed-"):
            os.remove(os.path.join(OUT, f))

    # S: signed at run time with the test IdP key (flags: see fuzz_targets/acs.rs).
    write("S-both-signed", "S", 0x00, response(assertion()))
    write("S-response-signed", "S", 0x01, response(assertion(signed=False)))
    write("S-assertion-signed", "S", 0x02, response(assertion(), signed=False))
    write("S-both-required-sha512", "S", 0x03, response(assertion(alg="sha512"), alg="sha512"))
    write("S-rsa-sha1-refused", "S", 0x00, response(assertion(alg="sha1"), alg="sha1"))
    write(
        "S-unsolicited",
        "S",
        0x04,
        response(assertion(irt=""), irt=""),
    )
    write("S-subject-attribute", "S", 0x80, response(assertion()))
    write(
        "S-transient-name-id",
        "S",
        0x00,
        response(assertion(fmt=TRANSIENT, name_id=" x1 ")),
    )
    write(
        "S-status-responder",
        "S",
        0x00,
        response(
            assertion(),
            status='<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder">'
            '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode>'
            "<samlp:StatusMessage>no</samlp:StatusMessage>",
        ),
    )
    write(
        "S-escaped-values",
        "S",
        0x80,
        response(
            assertion(
                name_id="a&amp;b&#x40;example.com",
                extra_attrs='<saml:Attribute Name="x" FriendlyName="uid2"><saml:AttributeValue>&lt;v&gt;</saml:AttributeValue>'
                "<saml:AttributeValue/></saml:Attribute>",
            )
        ),
    )
    # E: the assertion is encrypted to the SP certificate at run time.
    write("E-inner-signed-aes128cbc", "E", 0x00, response(assertion(), signed=False))
    write("E-inner-signed-aes128gcm", "E", 0x20, response(assertion(), signed=False))
    write("E-response-signed-aes128gcm-oaep11", "E", 0x60, response(assertion(signed=False)))
    write("E-both-signed-aes256cbc-oaep11", "E", 0x53, response(assertion()))
    write("E-both-signed-aes256gcm", "E", 0x30, response(assertion()))
    write("E-no-sp-key", "E", 0x08, response(assertion()))

    # Encrypted decoys: `<!--enc-->...<!--/enc-->` is encrypted to the SP by the target before
    # anything is signed (fuzz_targets/acs.rs). The decoy is an unsigned assertion for mallory
    # in a wrapper of the SAML namespace, another namespace or none, placed where no signature
    # covers it (Extensions of an unsigned Response, KeyInfo and Object of the assertion's
    # signature, which the enveloped transform removes) or beside the genuine one; the Advice
    # and Response-signed shapes are inside signed content. Flags 0x20: AES-128-GCM (AES-CBC
    # needs a Response signature).
    decoy = assertion(aid="_evil", signed=False, name_id="mallory@example.com")

    def sealed(open_tag="<saml:EncryptedAssertion>", close_tag="</saml:EncryptedAssertion>"):
        return f"{open_tag}<!--enc-->{decoy}<!--/enc-->{close_tag}"

    foreign = sealed('<x:EncryptedAssertion xmlns:x="urn:example:decoy">', "</x:EncryptedAssertion>")
    no_ns = sealed('<EncryptedAssertion xmlns="">', "</EncryptedAssertion>")
    ext = lambda inner: f"<samlp:Extensions>{inner}</samlp:Extensions>"
    write("E-decoy-extensions", "E", 0x20, response(assertion(), signed=False, ext=ext(sealed())))
    write("E-decoy-foreign-ns", "E", 0x20, response(assertion() + foreign, signed=False))
    write("E-decoy-no-ns", "E", 0x20, response(no_ns + assertion(), signed=False))
    write(
        "E-decoy-keyinfo",
        "E",
        0x20,
        response(assertion(sig_tail=f"<ds:KeyInfo>{sealed()}</ds:KeyInfo>"), signed=False),
    )
    write(
        "E-decoy-object",
        "E",
        0x20,
        response(assertion(sig_tail=f"<ds:Object>{foreign}</ds:Object>"), signed=False),
    )
    write(
        "E-decoy-advice",
        "E",
        0x20,
        response(assertion(advice=f"<saml:Advice>{sealed()}</saml:Advice>"), signed=False),
    )
    write("E-two-encrypted", "E", 0x20, response(sealed() + assertion(), signed=False))
    write(
        "E-decoy-response-signed",
        "E",
        0x61,
        response(assertion(signed=False), ext=ext(sealed())),
    )
    write("S-decoy-encrypted-extensions", "S", 0x02, response(assertion(), signed=False, ext=ext(no_ns)))
    write(
        "S-decoy-response-keyinfo",
        "S",
        0x01,
        response(assertion(signed=False), sig_tail=f"<ds:KeyInfo>{sealed()}</ds:KeyInfo>"),
    )

    # X: raw documents (unsigned, or garbage-signed), also as plain XML files.
    plain = concrete(response(assertion(signed=False), signed=False))
    write("raw-unsigned.xml", None, 0, plain)
    garbage = concrete(
        response(
            assertion(signed=False),
            sig=sig_template("_resp1", digest="AAAA", value="QUJDRA=="),
        )
    )
    write("raw-garbage-signature.xml", None, 0, garbage)
    write(
        "raw-garbage-encrypted.xml",
        None,
        0,
        concrete(
            response(
                '<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">'
                '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
                '<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>'
                '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>'
                "<xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData>"
                "</xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>"
                + base64.b64encode(bytes(48)).decode()
                + "</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>",
                sig=sig_template("_resp1", digest="AAAA", value="QUJDRA=="),
            )
        ),
    )
    write(
        "raw-two-assertions.xml",
        None,
        0,
        concrete(response(assertion(signed=False) + assertion(aid="_a2", signed=False), signed=False)),
    )
    write(
        "raw-comment-in-nameid.xml",
        None,
        0,
        concrete(response(assertion(signed=False, name_id="alice@example.com<!---->.evil"), signed=False)),
    )
    write("X-unsolicited-no-key", "X", 0x0C, concrete(response(assertion(irt=""), irt="")))
    write("B-unsigned", "B", 0x00, base64.encodebytes(plain.encode()).decode())

    # P: the preflight scan with each root.
    write("P-response", "P", 0, garbage)
    write("P-logout-request", "P", 1, concrete(logout_request()))
    write("P-logout-response", "P", 2, concrete(logout_response()))
    # L: logout messages.
    write("L-logout-request", "L", 0, concrete(logout_request()))
    write("L-logout-response", "L", 1, concrete(logout_response()))
    # D: HTTP-Redirect payloads (base64 of raw DEFLATE).
    write("D-logout-request", "D", 0, deflate_b64(concrete(logout_request())))
    write("D-logout-response", "D", 2, deflate_b64(concrete(logout_response())).replace("+", " "))
    # R: query strings as received at the SLO endpoint.
    q = urllib.parse.quote(deflate_b64(concrete(logout_request())), safe="")
    sig_alg = urllib.parse.quote(ALGS["sha256"][0], safe="")
    write("R-unsigned", "R", 0, f"SAMLRequest={q}&RelayState=abc")
    write(
        "R-garbage-signed",
        "R",
        0,
        f"SAMLRequest={q}&RelayState=r%20s&SigAlg={sig_alg}&Signature={urllib.parse.quote(base64.b64encode(bytes(256)).decode(), safe='')}",
    )
    q2 = urllib.parse.quote(deflate_b64(concrete(logout_response())), safe="")
    write("R-response", "R", 0, f"SAMLResponse={q2}&SigAlg=x&Signature=y")
    # Q: signed through redirect::encode at run time.
    write("Q-logout-request", "Q", 0, logout_request())
    write("Q-logout-response", "Q", 3, logout_response())
    # M: IdP metadata.
    with open(os.path.join(HERE, "..", "keys", "idp.crt")) as f:
        pem = f.read()
    der_b64 = "".join(re.findall(r"^[A-Za-z0-9+/=]+$", pem, re.M))
    md = (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="{DS}" entityID="https://idp.example.com/metadata">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{der_b64}'
        "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/slo"/>'
        '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )
    write("M-metadata", "M", 0, md)


if __name__ == "__main__":
    main()
