#!/usr/bin/env node
// Test-side SAML helper for smoke.sh only (plays the SP): builds minimal DEFLATEd
// AuthnRequests / LogoutRequests / LogoutResponses for the HTTP-Redirect binding
// (optionally signed), parses the IdP's HTML forms, verifies the IdP's XML and
// redirect signatures (xml-crypto / node:crypto) and decrypts EncryptedAssertions
// (xml-encryption). Not part of the IdP.
//
// Usage (all output on stdout):
//   authn-request  ISSUER ACS_URL DESTINATION ID [FORCE_AUTHN]   -> base64 (deflated)
//   logout-request ISSUER DESTINATION NAME_ID SESSION_INDEX ID    -> base64 (deflated)
//   logout-response ISSUER DESTINATION IN_RESPONSE_TO ID          -> base64 (deflated)
//   redirect-query PARAM VALUE RELAY_STATE [SP_KEY_PEM] [SIGALG]  -> query string (signed if key)
//   form HTML_FILE                                                -> JSON {action, method, fields}
//   inflate BASE64                                                -> XML
//   check-redirect URL IDP_CERT_PEM                                -> JSON summary; pretty XML to $XML_OUT
//   check-response BASE64_SAMLRESPONSE IDP_CERT_PEM [SP_KEY_PEM]  -> JSON summary; pretty XML to $XML_OUT
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const zlib = require('node:zlib');
const { DOMParser } = require('@xmldom/xmldom');
const { SignedXml, xpath } = require('xml-crypto');
const xmlenc = require('xml-encryption');

const NS = {
  samlp: 'urn:oasis:names:tc:SAML:2.0:protocol',
  saml: 'urn:oasis:names:tc:SAML:2.0:assertion',
  ds: 'http://www.w3.org/2000/09/xmldsig#',
};
const SIGALGS = {
  'rsa-sha256': ['http://www.w3.org/2001/04/xmldsig-more#rsa-sha256', 'RSA-SHA256'],
  'rsa-sha1': ['http://www.w3.org/2000/09/xmldsig#rsa-sha1', 'RSA-SHA1'],
};

const now = () => new Date().toISOString();
const deflateB64 = (xml) => zlib.deflateRawSync(Buffer.from(xml, 'utf8')).toString('base64');
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

function inflateB64(b64) {
  const buf = Buffer.from(b64, 'base64');
  return buf[0] === 0x3c ? buf.toString('utf8') : zlib.inflateRawSync(buf).toString('utf8');
}

function pretty(xml) {
  // Display only: indent one element per line (text-only elements stay on one line).
  const tokens = xml.replace(/>\s*</g, '><').split(/(?=<)|(?<=>)/).filter((t) => t !== '');
  let depth = 0;
  const out = [];
  for (let i = 0; i < tokens.length; i += 1) {
    const t = tokens[i];
    if (t.startsWith('</')) {
      depth -= 1;
      out.push(`${'  '.repeat(depth)}${t}`);
    } else if (t.startsWith('<') && !t.endsWith('/>') && !t.startsWith('<?')) {
      const text = tokens[i + 1];
      const close = tokens[i + 2];
      if (text !== undefined && !text.startsWith('<') && close?.startsWith('</')) {
        out.push(`${'  '.repeat(depth)}${t}${text.length > 100 ? `${text.slice(0, 60)}...(${text.length} chars)` : text}${close}`);
        i += 2;
      } else {
        out.push(`${'  '.repeat(depth)}${t}`);
        depth += 1;
      }
    } else if (t.startsWith('<')) {
      out.push(`${'  '.repeat(depth)}${t}`);
    } else {
      out.push(`${'  '.repeat(depth)}${t.length > 100 ? `${t.slice(0, 60)}...(${t.length} chars)` : t}`);
    }
  }
  return out.join('\n');
}

function verifyEnveloped(xml, signatureNode, certPem) {
  const sig = new SignedXml();
  sig.keyInfoProvider = { getKeyInfo: () => '<X509Data></X509Data>', getKey: () => Buffer.from(certPem) };
  sig.loadSignature(signatureNode);
  const ok = sig.checkSignature(xml);
  const sigMethod = xpath(signatureNode, ".//*[local-name()='SignatureMethod']")[0]?.getAttribute('Algorithm');
  const digestMethod = xpath(signatureNode, ".//*[local-name()='DigestMethod']")[0]?.getAttribute('Algorithm');
  const refUri = xpath(signatureNode, ".//*[local-name()='Reference']")[0]?.getAttribute('URI');
  return { valid: ok, errors: ok ? [] : sig.validationErrors, signature_method: sigMethod, digest_method: digestMethod, reference: refUri };
}

function assertionSummary(assertion) {
  const one = (path) => xpath(assertion, path)[0];
  const attr = (path, name) => one(path)?.getAttribute(name) || null;
  const attributes = {};
  for (const a of xpath(assertion, "./*[local-name()='AttributeStatement']/*[local-name()='Attribute']")) {
    attributes[a.getAttribute('Name')] = {
      name_format: a.getAttribute('NameFormat') || null,
      friendly_name: a.getAttribute('FriendlyName') || null,
      values: xpath(a, "./*[local-name()='AttributeValue']").map((v) => v.textContent),
    };
  }
  const scd = "./*[local-name()='Subject']/*[local-name()='SubjectConfirmation']/*[local-name()='SubjectConfirmationData']";
  return {
    id: assertion.getAttribute('ID'),
    issuer: one("./*[local-name()='Issuer']")?.textContent ?? null,
    name_id: one("./*[local-name()='Subject']/*[local-name()='NameID']")?.textContent ?? null,
    name_id_format: attr("./*[local-name()='Subject']/*[local-name()='NameID']", 'Format'),
    subject_confirmation_method: attr("./*[local-name()='Subject']/*[local-name()='SubjectConfirmation']", 'Method'),
    recipient: attr(scd, 'Recipient'),
    in_response_to: attr(scd, 'InResponseTo'),
    scd_not_on_or_after: attr(scd, 'NotOnOrAfter'),
    not_before: attr("./*[local-name()='Conditions']", 'NotBefore'),
    not_on_or_after: attr("./*[local-name()='Conditions']", 'NotOnOrAfter'),
    audiences: xpath(assertion, "./*[local-name()='Conditions']//*[local-name()='Audience']").map((n) => n.textContent),
    session_index: attr("./*[local-name()='AuthnStatement']", 'SessionIndex'),
    authn_instant: attr("./*[local-name()='AuthnStatement']", 'AuthnInstant'),
    authn_context_class_ref: one(".//*[local-name()='AuthnContextClassRef']")?.textContent ?? null,
    attributes,
  };
}

async function checkResponse(b64, idpCertPath, spKeyPath) {
  const idpCert = fs.readFileSync(idpCertPath, 'utf8');
  const xml = Buffer.from(b64, 'base64').toString('utf8');
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const resp = doc.documentElement;
  if (resp.localName !== 'Response' || resp.namespaceURI !== NS.samlp) throw new Error(`not a samlp:Response: ${resp.tagName}`);
  const summary = {
    response: {
      id: resp.getAttribute('ID'),
      in_response_to: resp.getAttribute('InResponseTo') || null,
      destination: resp.getAttribute('Destination') || null,
      issue_instant: resp.getAttribute('IssueInstant'),
      issuer: xpath(resp, "./*[local-name()='Issuer']")[0]?.textContent ?? null,
      status: xpath(resp, ".//*[local-name()='StatusCode']")[0]?.getAttribute('Value') ?? null,
    },
  };
  const respSig = xpath(resp, `./*[local-name()='Signature' and namespace-uri()='${NS.ds}']`)[0];
  summary.response_signature = respSig ? verifyEnveloped(xml, respSig, idpCert) : null;

  let assertionXml;
  let assertionDoc;
  const enc = xpath(resp, "./*[local-name()='EncryptedAssertion']")[0];
  if (enc) {
    if (!spKeyPath) throw new Error('EncryptedAssertion but no SP key given');
    const encData = xpath(enc, "./*[local-name()='EncryptedData']")[0];
    summary.encryption = {
      data_method: xpath(encData, "./*[local-name()='EncryptionMethod']")[0]?.getAttribute('Algorithm'),
      key_method: xpath(encData, ".//*[local-name()='EncryptedKey']/*[local-name()='EncryptionMethod']")[0]?.getAttribute('Algorithm'),
    };
    assertionXml = await new Promise((resolve, reject) => {
      xmlenc.decrypt(encData.toString(), {
        key: fs.readFileSync(spKeyPath, 'utf8'), disallowDecryptionWithInsecureAlgorithm: false, warnInsecureAlgorithm: false,
      }, (err, out) => (err ? reject(err) : resolve(out)));
    });
    assertionDoc = new DOMParser().parseFromString(assertionXml, 'text/xml');
  } else {
    summary.encryption = null;
    assertionXml = xml;
    assertionDoc = doc;
  }
  const assertion = enc ? assertionDoc.documentElement
    : xpath(resp, "./*[local-name()='Assertion']")[0];
  if (!assertion) throw new Error('no Assertion');
  const aSig = xpath(assertion, `./*[local-name()='Signature' and namespace-uri()='${NS.ds}']`)[0];
  summary.assertion_signature = aSig ? verifyEnveloped(assertionXml, aSig, idpCert) : null;
  summary.assertion = assertionSummary(assertion);
  if (process.env.XML_OUT) {
    let out = pretty(xml);
    if (enc) out += `\n\n<!-- decrypted EncryptedAssertion -->\n${pretty(assertionXml)}`;
    fs.writeFileSync(process.env.XML_OUT, `${out}\n`);
  }
  return summary;
}

function checkRedirect(url, idpCertPath) {
  const u = new URL(url);
  const raw = Object.fromEntries(u.search.slice(1).split('&').map((kv) => {
    const i = kv.indexOf('=');
    return [decodeURIComponent(kv.slice(0, i)), kv.slice(i + 1)];
  }));
  const param = 'SAMLRequest' in raw ? 'SAMLRequest' : 'SAMLResponse';
  const dec = (s) => (s === undefined ? undefined : decodeURIComponent(s.replace(/\+/g, ' ')));
  const signed = [`${param}=${raw[param]}`];
  if (raw.RelayState !== undefined) signed.push(`RelayState=${raw.RelayState}`);
  signed.push(`SigAlg=${raw.SigAlg}`);
  const sigAlg = dec(raw.SigAlg);
  const nodeAlg = Object.values(SIGALGS).find(([uri]) => uri === sigAlg)?.[1];
  const valid = Boolean(nodeAlg) && crypto.verify(nodeAlg, Buffer.from(signed.join('&')),
    crypto.createPublicKey(fs.readFileSync(idpCertPath, 'utf8')), Buffer.from(dec(raw.Signature), 'base64'));
  const xml = inflateB64(dec(raw[param]));
  const doc = new DOMParser().parseFromString(xml, 'text/xml').documentElement;
  const summary = {
    target: `${u.origin}${u.pathname}`,
    param,
    relay_state: dec(raw.RelayState) ?? null,
    sig_alg: sigAlg,
    signature_valid: valid,
    element: doc.localName,
    id: doc.getAttribute('ID'),
    in_response_to: doc.getAttribute('InResponseTo') || null,
    destination: doc.getAttribute('Destination') || null,
    issuer: xpath(doc, "./*[local-name()='Issuer']")[0]?.textContent ?? null,
    name_id: xpath(doc, "./*[local-name()='NameID']")[0]?.textContent ?? null,
    session_index: xpath(doc, "./*[local-name()='SessionIndex']")[0]?.textContent ?? null,
    status: xpath(doc, ".//*[local-name()='StatusCode']")[0]?.getAttribute('Value') ?? null,
  };
  if (process.env.XML_OUT) fs.writeFileSync(process.env.XML_OUT, `${pretty(xml)}\n`);
  return summary;
}

function redirectQuery(param, b64, relayState, spKeyPath, sigAlgName = 'rsa-sha256') {
  const parts = [`${param}=${encodeURIComponent(b64)}`];
  if (relayState) parts.push(`RelayState=${encodeURIComponent(relayState)}`);
  if (spKeyPath) {
    const [uri, nodeAlg] = SIGALGS[sigAlgName];
    parts.push(`SigAlg=${encodeURIComponent(uri)}`);
    const sig = crypto.sign(nodeAlg, Buffer.from(parts.join('&')), fs.readFileSync(spKeyPath, 'utf8'));
    parts.push(`Signature=${encodeURIComponent(sig.toString('base64'))}`);
  }
  return parts.join('&');
}

function parseForm(html) {
  const form = html.match(/<form\b[^>]*>/i)?.[0];
  if (!form) throw new Error('no <form> in HTML');
  const attr = (tag, name) => tag.match(new RegExp(`\\b${name}\\s*=\\s*"([^"]*)"`, 'i'))?.[1];
  const unescape = (s) => s?.replace(/&quot;/g, '"').replace(/&#34;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>').replace(/&#x3D;/gi, '=').replace(/&#x2F;/gi, '/').replace(/&amp;/g, '&');
  const fields = {};
  for (const input of html.match(/<input\b[^>]*>/gi) ?? []) {
    const name = attr(input, 'name');
    if (name) fields[name] = unescape(attr(input, 'value') ?? '');
  }
  return { action: unescape(attr(form, 'action')), method: (attr(form, 'method') ?? 'get').toLowerCase(), fields };
}

async function main() {
  const [cmd, ...a] = process.argv.slice(2);
  switch (cmd) {
    case 'authn-request': {
      const [issuer, acs, dest, id, force] = a;
      process.stdout.write(deflateB64(
        `<samlp:AuthnRequest xmlns:samlp="${NS.samlp}" xmlns:saml="${NS.saml}" ID="${esc(id)}" Version="2.0"`
        + ` IssueInstant="${now()}" Destination="${esc(dest)}" AssertionConsumerServiceURL="${esc(acs)}"`
        + ` ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"${force === 'force' ? ' ForceAuthn="true"' : ''}>`
        + `<saml:Issuer>${esc(issuer)}</saml:Issuer>`
        + '<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" AllowCreate="true"/>'
        + '</samlp:AuthnRequest>',
      ));
      break;
    }
    case 'logout-request': {
      const [issuer, dest, nameId, sessionIndex, id] = a;
      process.stdout.write(deflateB64(
        `<samlp:LogoutRequest xmlns:samlp="${NS.samlp}" xmlns:saml="${NS.saml}" ID="${esc(id)}" Version="2.0"`
        + ` IssueInstant="${now()}" Destination="${esc(dest)}">`
        + `<saml:Issuer>${esc(issuer)}</saml:Issuer>`
        + `<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${esc(nameId)}</saml:NameID>`
        + `<samlp:SessionIndex>${esc(sessionIndex)}</samlp:SessionIndex>`
        + '</samlp:LogoutRequest>',
      ));
      break;
    }
    case 'logout-response': {
      const [issuer, dest, inResponseTo, id] = a;
      process.stdout.write(deflateB64(
        `<samlp:LogoutResponse xmlns:samlp="${NS.samlp}" xmlns:saml="${NS.saml}" ID="${esc(id)}" Version="2.0"`
        + ` IssueInstant="${now()}" Destination="${esc(dest)}" InResponseTo="${esc(inResponseTo)}">`
        + `<saml:Issuer>${esc(issuer)}</saml:Issuer>`
        + '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        + '</samlp:LogoutResponse>',
      ));
      break;
    }
    case 'redirect-query':
      process.stdout.write(redirectQuery(...a));
      break;
    case 'form':
      process.stdout.write(`${JSON.stringify(parseForm(fs.readFileSync(a[0], 'utf8')))}\n`);
      break;
    case 'inflate':
      process.stdout.write(`${inflateB64(a[0])}\n`);
      break;
    case 'check-redirect':
      process.stdout.write(`${JSON.stringify(checkRedirect(a[0], a[1]), null, 2)}\n`);
      break;
    case 'check-response':
      process.stdout.write(`${JSON.stringify(await checkResponse(a[0], a[1], a[2]), null, 2)}\n`);
      break;
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

main().catch((err) => {
  console.error(`smoke-helper: ${err.stack ?? err}`);
  process.exit(1);
});
