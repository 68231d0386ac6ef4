// Test-only SAML 2.0 Identity Provider for jitbridge integration tests.
//
// The SAML work is done by the real npm package `samlp` (Auth0's SAML-P server
// middleware) and its `saml` assertion builder: parsing AuthnRequests and
// LogoutRequests, building and signing Responses and Assertions (xml-crypto),
// encrypting assertions (xml-encryption), building/signing LogoutRequests and
// LogoutResponses for the HTTP-Redirect binding, the SLO session-participant state
// machine and the IdP metadata document. This file only wires samlp to express,
// adds a scriptable login form, the single configured SP, a session registry and
// an admin API. See README.md for the interface.
//
// stdout carries exactly one line (the ready line); everything else goes to stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import process from 'node:process';

for (const m of ['log', 'info', 'debug', 'warn', 'trace']) {
  console[m] = (...args) => console.error(...args);
}
const log = (...args) => console.error('[saml-idp]', ...args);

const require = createRequire(import.meta.url);
const express = require('express');
const session = require('express-session');
const samlp = require('samlp');
const SessionParticipants = require('samlp/lib/sessionParticipants');

const HTTP_REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const SSO_PATH = '/saml/sso';
const SSO_LOGIN_PATH = '/saml/sso/login';
const SSO_INIT_PATH = '/saml/sso/init';
const SLO_PATH = '/saml/slo';
const SLO_INIT_PATH = '/saml/slo/init';
const METADATA_PATH = '/metadata';

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

function die(msg) {
  log(msg);
  process.exit(2);
}

const env = process.env;

const portRaw = process.argv[2] ?? env.SAML_IDP_PORT ?? '0';
const requestedPort = /^\d+$/.test(portRaw) ? Number(portRaw) : NaN;
if (!Number.isInteger(requestedPort) || requestedPort > 65535) die(`invalid port: ${portRaw}`);

function readPem(varName, { required }) {
  const path = env[varName];
  if (path === undefined || path === '') {
    if (required) die(`${varName} (path of a PEM file) is required`);
    return null;
  }
  try {
    return fs.readFileSync(path, 'utf8');
  } catch (err) {
    return die(`${varName}: cannot read ${path}: ${err.message}`);
  }
}

function parseCert(varName, pem) {
  try {
    return new crypto.X509Certificate(pem);
  } catch (err) {
    return die(`${varName}: not a PEM certificate: ${err.message}`);
  }
}

const idpKeyPem = readPem('SAML_IDP_KEY', { required: true });
const idpCertPem = readPem('SAML_IDP_CERT', { required: true });
let idpKey;
try {
  idpKey = crypto.createPrivateKey(idpKeyPem);
} catch (err) {
  die(`SAML_IDP_KEY: not a PEM private key: ${err.message}`);
}
if (idpKey.asymmetricKeyType !== 'rsa') die('SAML_IDP_KEY must be an RSA key');
if (!parseCert('SAML_IDP_CERT', idpCertPem).checkPrivateKey(idpKey)) {
  die('SAML_IDP_CERT does not match SAML_IDP_KEY');
}

const spEntityId = env.SAML_SP_ENTITY_ID || die('SAML_SP_ENTITY_ID is required');
const spAcsUrl = env.SAML_SP_ACS_URL || die('SAML_SP_ACS_URL is required');
const spSloUrl = env.SAML_SP_SLO_URL || null;

// SP signing certificate: when set, the SP's AuthnRequests and its logout messages
// (for a known session) must be signed with it.
const spCertPem = readPem('SAML_SP_CERT', { required: false });
if (spCertPem) parseCert('SAML_SP_CERT', spCertPem);

// SP encryption certificate: when set, assertions are encrypted to it (by default).
const spEncCertPem = readPem('SAML_SP_ENCRYPTION_CERT', { required: false });
const spEncPublicPem = spEncCertPem
  ? parseCert('SAML_SP_ENCRYPTION_CERT', spEncCertPem).publicKey.export({ type: 'spki', format: 'pem' })
  : null;

const SIGN_MODES = ['both', 'response', 'assertion', 'none'];
const SIG_ALGS = ['rsa-sha256', 'rsa-sha1'];
const DIGEST_ALGS = ['sha256', 'sha1'];
const ENC_ALGS = {
  'aes256-gcm': 'http://www.w3.org/2009/xmlenc11#aes256-gcm',
  'aes128-gcm': 'http://www.w3.org/2009/xmlenc11#aes128-gcm',
  'aes256-cbc': 'http://www.w3.org/2001/04/xmlenc#aes256-cbc',
  'aes128-cbc': 'http://www.w3.org/2001/04/xmlenc#aes128-cbc',
};
const OVERRIDE_KEYS = ['issuer', 'audience', 'destination', 'recipient', 'in_response_to'];

function parseJsonEnv(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  try {
    return JSON.parse(raw);
  } catch (err) {
    return die(`invalid JSON in ${name}: ${err.message}`);
  }
}

// Validates a (partial) config object; returns an error string or null.
function configError(c) {
  if ('sign' in c && !SIGN_MODES.includes(c.sign)) return `sign must be one of ${SIGN_MODES.join('|')}`;
  if ('signature_algorithm' in c && !SIG_ALGS.includes(c.signature_algorithm)) {
    return `signature_algorithm must be one of ${SIG_ALGS.join('|')}`;
  }
  if ('digest_algorithm' in c && !DIGEST_ALGS.includes(c.digest_algorithm)) {
    return `digest_algorithm must be one of ${DIGEST_ALGS.join('|')}`;
  }
  if ('lifetime_seconds' in c && !(Number.isInteger(c.lifetime_seconds) && c.lifetime_seconds > 0)) {
    return 'lifetime_seconds must be a positive integer';
  }
  if ('encrypt' in c) {
    if (typeof c.encrypt !== 'boolean') return 'encrypt must be a boolean';
    if (c.encrypt && !spEncCertPem) return 'encrypt needs SAML_SP_ENCRYPTION_CERT';
  }
  if ('encryption_algorithm' in c && !(c.encryption_algorithm in ENC_ALGS)) {
    return `encryption_algorithm must be one of ${Object.keys(ENC_ALGS).join('|')}`;
  }
  for (const k of ['authn_context_class_ref', 'name_id_format']) {
    if (k in c && (typeof c[k] !== 'string' || c[k] === '')) return `${k} must be a non-empty string`;
  }
  if ('auto_login' in c && c.auto_login !== null && typeof c.auto_login !== 'string') {
    return 'auto_login must be a login or null';
  }
  if ('overrides' in c) {
    const o = c.overrides;
    if (!o || typeof o !== 'object' || Array.isArray(o)) return 'overrides must be an object';
    for (const [k, v] of Object.entries(o)) {
      if (!OVERRIDE_KEYS.includes(k)) return `unknown override ${k} (known: ${OVERRIDE_KEYS.join(', ')})`;
      if (v !== null && typeof v !== 'string') return `override ${k} must be a string or null`;
    }
  }
  if ('clock_offset_seconds' in c && !Number.isInteger(c.clock_offset_seconds)) {
    return 'clock_offset_seconds must be an integer';
  }
  const known = ['sign', 'signature_algorithm', 'digest_algorithm', 'lifetime_seconds', 'encrypt',
    'encryption_algorithm', 'authn_context_class_ref', 'name_id_format', 'auto_login', 'overrides',
    'clock_offset_seconds'];
  for (const k of Object.keys(c)) if (!known.includes(k)) return `unknown config key ${k}`;
  return null;
}

function envInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  return /^\d+$/.test(raw) ? Number(raw) : die(`${name} must be a positive integer`);
}

const cfg = {
  sign: env.SAML_IDP_SIGN || 'both',
  signature_algorithm: env.SAML_IDP_SIG_ALG || 'rsa-sha256',
  digest_algorithm: env.SAML_IDP_DIGEST_ALG || 'sha256',
  lifetime_seconds: envInt('SAML_IDP_LIFETIME', 300),
  encrypt: Boolean(spEncCertPem) && env.SAML_IDP_ENCRYPT !== '0',
  encryption_algorithm: env.SAML_IDP_ENCRYPTION_ALG || 'aes256-gcm',
  authn_context_class_ref: env.SAML_IDP_AUTHN_CONTEXT
    || 'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport',
  name_id_format: env.SAML_IDP_NAMEID_FORMAT || 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
  auto_login: env.SAML_IDP_AUTO_LOGIN || null,
  overrides: {},
  clock_offset_seconds: 0,
};

// The IdP's clock can be moved (admin `clock_offset_seconds`) so that the SP under test sees
// assertions that are not valid yet or already expired, as from an IdP with a skewed clock.
// samlp reads the time through `Date`, so the offset is applied to `Date` itself.
const RealDate = Date;
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + cfg.clock_offset_seconds * 1000);
    else super(...args);
  }
  static now() { return RealDate.now() + cfg.clock_offset_seconds * 1000; }
}
globalThis.Date = SkewedDate;
{
  const err = configError(cfg);
  if (err) die(`invalid configuration: ${err}`);
}

// Users: login -> { password?, nameId?, nameIdFormat?, attributes? }
const DEFAULT_USERS = {
  alice: {
    nameId: 'alice@example.com',
    attributes: {
      email: 'alice@example.com',
      givenName: 'Alice',
      sn: 'Liddell',
      displayName: 'Alice Liddell',
      groups: ['staff', 'admins'],
    },
  },
  bob: {
    nameId: 'bob@example.com',
    attributes: {
      email: 'bob@example.com',
      givenName: 'Bob',
      sn: 'Builder',
      displayName: 'Bob Builder',
      groups: ['staff'],
    },
  },
};

// Returns [normalizedUser, null] or [null, errorString].
function normalizeUser(login, u) {
  if (!u || typeof u !== 'object' || Array.isArray(u)) return [null, `user ${login} must be an object`];
  for (const k of Object.keys(u)) {
    if (!['password', 'nameId', 'nameIdFormat', 'attributes'].includes(k)) {
      return [null, `user ${login}: unknown key ${k} (known: password, nameId, nameIdFormat, attributes)`];
    }
  }
  for (const k of ['password', 'nameId', 'nameIdFormat']) {
    if (k in u && u[k] !== null && typeof u[k] !== 'string') return [null, `user ${login}: ${k} must be a string`];
  }
  const attributes = u.attributes ?? {};
  if (typeof attributes !== 'object' || Array.isArray(attributes)) {
    return [null, `user ${login}: attributes must be an object`];
  }
  const scalar = (v) => ['string', 'number', 'boolean'].includes(typeof v);
  for (const [name, v] of Object.entries(attributes)) {
    if (!(scalar(v) || (Array.isArray(v) && v.every(scalar)))) {
      return [null, `user ${login}: attribute ${name} must be a string/number/boolean or an array of them`];
    }
  }
  return [{
    password: u.password ?? null,
    nameId: u.nameId || login,
    nameIdFormat: u.nameIdFormat || null,
    attributes,
  }, null];
}

const users = new Map();
{
  const init = parseJsonEnv('SAML_IDP_USERS', DEFAULT_USERS);
  if (!init || typeof init !== 'object' || Array.isArray(init)) die('SAML_IDP_USERS must be a JSON object');
  for (const [login, u] of Object.entries(init)) {
    const [user, err] = normalizeUser(login, u);
    if (err) die(`SAML_IDP_USERS: ${err}`);
    users.set(login, user);
  }
}

// ---------------------------------------------------------------------------
// State: SP sessions (one per issued Response), pending logins, SLO transactions
// ---------------------------------------------------------------------------

// sessionIndex -> samlp session participant (+ login, created_at)
const registry = new Map();
// pending login-form transactions: txn -> { samlRequest, relayState, id, expires }
const pendingLogins = new Map();
// IdP-initiated SLO: transaction handle -> queue (array) of participants still to log out
const sloQueues = new Map();

function sameSession(issuer, sessionIndices, nameId) {
  const indices = sessionIndices == null ? [] : [].concat(sessionIndices);
  return (s) => (!issuer || !s.serviceProviderId || s.serviceProviderId === issuer)
    && (indices.length === 0 || indices.includes(s.sessionIndex))
    && s.nameId === nameId;
}

// samlp's SessionParticipants with two changes: lookups also see every live SP session
// (not only the queue of participants this request will send LogoutRequests to), a
// LogoutRequest without SessionIndex matches by NameID alone, and removing a participant
// also ends that SP session in the registry.
class Participants extends SessionParticipants {
  get(issuer, sessionIndices, nameId, cb) {
    const match = sameSession(issuer, sessionIndices, nameId);
    const found = this._participants.find(match) ?? [...registry.values()].find(match);
    if (cb) return cb(null, found);
    return found;
  }

  remove(serviceProviderId, sessionIndex, nameId, cb) {
    if (serviceProviderId) {
      const match = sameSession(serviceProviderId, sessionIndex, nameId);
      for (const [k, s] of registry) {
        if (match(s)) {
          registry.delete(k);
          log(`SP session ended: nameId=${s.nameId} sessionIndex=${s.sessionIndex}`);
          break;
        }
      }
    }
    return super.remove(serviceProviderId, sessionIndex, nameId, cb);
  }
}

// Process-wide replacement for samlp's default (cookie-session) logout state store,
// so that a LogoutResponse may come back without the IdP cookie.
class LogoutStore {
  constructor() { this.states = new Map(); }

  save(req, state, options, cb) {
    if (typeof options === 'function') { cb = options; options = {}; }
    const h = options?.h || crypto.randomBytes(12).toString('hex');
    this.states.set(h, structuredClone({ ...state, initiatedAt: state.initiatedAt ?? Date.now() }));
    if (!state.transactionId && req.sloQueue) sloQueues.set(h, req.sloQueue);
    return cb(null, h);
  }

  load(req, h, options, cb) {
    if (typeof options === 'function') { cb = options; options = {}; }
    const s = this.states.get(h);
    if (!s) return cb();
    const copy = { ...structuredClone(s), handle: h };
    if (options?.destroy) this.destroy(req, h, () => {});
    return cb(null, copy);
  }

  update(req, h, state, cb) {
    const copy = { ...state };
    delete copy.handle;
    this.states.set(h, structuredClone(copy));
    return cb(null, h);
  }

  destroy(req, h, cb) {
    this.states.delete(h);
    sloQueues.delete(h);
    return cb?.();
  }

  peek(h) { return this.states.get(h); }
}
const logoutStore = new LogoutStore();

// ---------------------------------------------------------------------------
// samlp glue
// ---------------------------------------------------------------------------

function ProfileMapper(user) {
  if (!(this instanceof ProfileMapper)) return new ProfileMapper(user);
  this.user = user;
}
ProfileMapper.prototype.getClaims = function getClaims() {
  return { ...this.user.attributes };
};
ProfileMapper.prototype.getNameIdentifier = function getNameIdentifier() {
  return { nameIdentifier: this.user.nameId, nameIdentifierFormat: this.user.nameIdFormat || cfg.name_id_format };
};
ProfileMapper.prototype.metadata = []; // no <Attribute> elements in the metadata

let baseUrl = ''; // http://127.0.0.1:<port>, set once listening
let entityId = '';

function htmlEscape(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function badRequest(res, status, message) {
  log(`${status}: ${message}`);
  res.status(status).type('text/plain').send(`error: ${message}\n`);
}

// Issue a Response for `user` (answering `authn`, or unsolicited when authn is null) as
// the samlp auto-submit HTML form to the SP's ACS URL.
function issueResponse(req, res, next, login, user, authn, relayState) {
  const sessionIndex = `_${crypto.randomBytes(16).toString('hex')}`;
  const nameIdFormat = user.nameIdFormat || cfg.name_id_format;
  registry.set(sessionIndex, {
    serviceProviderId: spEntityId,
    nameId: user.nameId,
    nameIdFormat,
    sessionIndex,
    serviceProviderLogoutURL: spSloUrl,
    binding: HTTP_REDIRECT,
    cert: spCertPem || undefined,
    login,
    created_at: new Date().toISOString(),
  });
  req.session.login = login;
  req.session.sessionIndices = [...(req.session.sessionIndices ?? []), sessionIndex];

  const o = cfg.overrides;
  const enc = cfg.encrypt ? {
    encryptionCert: spEncCertPem,
    encryptionPublicKey: spEncPublicPem,
    encryptionAlgorithm: ENC_ALGS[cfg.encryption_algorithm],
    disallowEncryptionWithInsecureAlgorithm: !cfg.encryption_algorithm.endsWith('-cbc'),
    warnOnInsecureEncryptionAlgorithm: false,
  } : {};
  const options = {
    issuer: o.issuer ?? entityId,
    cert: idpCertPem,
    key: idpKeyPem,
    getPostURL: (audience, dom, r, cb) => cb(null, spAcsUrl),
    getUserFromRequest: () => user,
    profileMapper: ProfileMapper,
    audience: o.audience ?? spEntityId,
    destination: o.destination ?? spAcsUrl,
    recipient: o.recipient ?? spAcsUrl,
    inResponseTo: o.in_response_to ?? undefined,
    RelayState: relayState || '',
    signResponse: cfg.sign === 'both' || cfg.sign === 'response',
    signAssertion: cfg.sign === 'both' || cfg.sign === 'assertion',
    signatureAlgorithm: cfg.signature_algorithm,
    digestAlgorithm: cfg.digest_algorithm,
    lifetimeInSeconds: cfg.lifetime_seconds,
    sessionIndex,
    nameIdentifierFormat: nameIdFormat,
    authnContextClassRef: cfg.authn_context_class_ref,
    ...enc,
  };
  log(`issuing Response: login=${login} nameId=${user.nameId} sessionIndex=${sessionIndex}`
    + ` inResponseTo=${o.in_response_to ?? authn?.id ?? '(unsolicited)'} sign=${cfg.sign}`
    + ` alg=${cfg.signature_algorithm}/${cfg.digest_algorithm} encrypt=${cfg.encrypt}`);
  // samlp.auth re-reads the AuthnRequest (ID -> InResponseTo) from this request object.
  const samlReq = { method: 'POST', query: {}, body: authn ? { SAMLRequest: authn.samlRequest } : {} };
  samlp.auth(options)(samlReq, res, (err) => {
    registry.delete(sessionIndex);
    next(err);
  });
}

function loginForm(res, status, txn, message) {
  res.status(status).type('html').send(`<!doctype html>
<html><head><meta charset="utf-8"><title>SAML test IdP - sign in</title></head>
<body>
<h1>SAML test IdP</h1>
${message ? `<p class="error">${htmlEscape(message)}</p>\n` : ''}<form method="post" action="${SSO_LOGIN_PATH}">
<input type="hidden" name="txn" value="${htmlEscape(txn)}">
<label>Username <input type="text" name="username" autofocus></label>
<label>Password <input type="password" name="password"></label>
<button type="submit">Sign in</button>
</form>
<p>Users: ${[...users.keys()].map(htmlEscape).join(', ')}</p>
</body></html>
`);
}

function checkCredentials(login, password) {
  const user = users.get(login);
  if (!user) return [null, `unknown user ${login}`];
  if (user.password !== null && password !== user.password) return [null, `wrong password for ${login}`];
  return [user, null];
}

// GET (HTTP-Redirect) or POST (HTTP-POST) AuthnRequest.
function handleSso(req, res, next) {
  const src = req.method === 'GET' ? req.query : req.body;
  const samlRequest = src.SAMLRequest;
  if (!samlRequest) return badRequest(res, 400, 'missing SAMLRequest');
  const relayState = src.RelayState ?? '';
  return samlp.parseRequest(req, spCertPem ? { signingCert: spCertPem } : {}, (err, data) => {
    if (err) return badRequest(res, 400, `invalid AuthnRequest: ${err.message ?? err}`);
    if (!data || !data.id) return badRequest(res, 400, 'AuthnRequest without ID');
    if (data.issuer !== spEntityId) return badRequest(res, 400, `unknown SP (Issuer ${data.issuer})`);
    if (data.assertionConsumerServiceURL && data.assertionConsumerServiceURL !== spAcsUrl) {
      return badRequest(res, 400, `AssertionConsumerServiceURL ${data.assertionConsumerServiceURL} is not the SP's ACS URL ${spAcsUrl}`);
    }
    const ssoUrls = [`${baseUrl}${SSO_PATH}`, `${req.protocol}://${req.get('host')}${SSO_PATH}`];
    if (data.destination && !ssoUrls.includes(data.destination)) {
      return badRequest(res, 400, `Destination ${data.destination} is not ${ssoUrls[0]}`);
    }
    const forceAuthn = data.forceAuthn === 'true' || data.forceAuthn === '1';
    const authn = { samlRequest, relayState, id: data.id };

    if (typeof src.login === 'string' && src.login !== '') { // harness shortcut: no form
      const [user, e] = checkCredentials(src.login, src.password);
      if (!user) return badRequest(res, 401, e);
      return issueResponse(req, res, next, src.login, user, authn, relayState);
    }
    const ssoLogin = req.session.login;
    if (ssoLogin && users.has(ssoLogin) && !forceAuthn) { // existing IdP session: SSO
      return issueResponse(req, res, next, ssoLogin, users.get(ssoLogin), authn, relayState);
    }
    if (cfg.auto_login) {
      const user = users.get(cfg.auto_login);
      if (!user) return badRequest(res, 500, `auto_login user ${cfg.auto_login} does not exist`);
      return issueResponse(req, res, next, cfg.auto_login, user, authn, relayState);
    }
    const txn = crypto.randomBytes(16).toString('hex');
    pendingLogins.set(txn, { ...authn, expires: Date.now() + 10 * 60 * 1000 });
    return loginForm(res, 200, txn, null);
  });
}

function handleLogin(req, res, next) {
  const { txn, username, password } = req.body ?? {};
  const pending = typeof txn === 'string' ? pendingLogins.get(txn) : undefined;
  if (!pending || pending.expires < Date.now()) {
    pendingLogins.delete(txn);
    return badRequest(res, 400, 'unknown or expired login transaction (txn)');
  }
  const [user, e] = checkCredentials(username ?? '', password);
  if (!user) {
    log(`login failed: ${e}`);
    return loginForm(res, 401, txn, e);
  }
  pendingLogins.delete(txn);
  return issueResponse(req, res, next, username, user, pending, pending.relayState);
}

function logoutOptions(req, queue) {
  return {
    issuer: entityId,
    cert: idpCertPem,
    key: idpKeyPem,
    deflate: true, // HTTP-Redirect: DEFLATE + query-string signature (SigAlg, Signature)
    protocolBinding: HTTP_REDIRECT,
    destination: spSloUrl, // where a LogoutResponse goes even for an unknown session
    signatureAlgorithm: cfg.signature_algorithm,
    digestAlgorithm: cfg.digest_algorithm,
    sessionParticipants: new Participants(queue),
    store: logoutStore,
    clearIdPSession: (cb) => {
      if (req.session) {
        delete req.session.login;
        delete req.session.sessionIndices;
      }
      cb();
    },
  };
}

// SP-initiated LogoutRequest, or the SP's LogoutResponse to an IdP-initiated one.
function handleSlo(req, res, next) {
  if (!spSloUrl) return badRequest(res, 400, 'SAML_SP_SLO_URL is not configured');
  const src = { ...req.body, ...req.query };
  if (src.SAMLRequest) {
    log('SP-initiated LogoutRequest');
    return samlp.logout(logoutOptions(req, []))(req, res, next);
  }
  if (src.SAMLResponse) {
    const state = src.RelayState ? logoutStore.peek(src.RelayState) : undefined;
    if (!state) return badRequest(res, 400, 'LogoutResponse with unknown or missing RelayState');
    const queue = sloQueues.get(state.transactionId) ?? [];
    log(`LogoutResponse for transaction ${state.transactionId}`);
    return samlp.logout(logoutOptions(req, queue))(req, res, next);
  }
  return badRequest(res, 400, `expected SAMLRequest or SAMLResponse (IdP-initiated logout: GET ${SLO_INIT_PATH})`);
}

// IdP-initiated logout: LogoutRequest(s) to the SP for the selected SP sessions.
function handleSloInit(req, res, next) {
  if (!spSloUrl) return badRequest(res, 400, 'SAML_SP_SLO_URL is not configured');
  const { nameId, sessionIndex } = req.query;
  let selected;
  if (nameId || sessionIndex) {
    selected = [...registry.values()].filter((s) => (!nameId || s.nameId === nameId)
      && (!sessionIndex || s.sessionIndex === sessionIndex));
  } else {
    const mine = new Set(req.session.sessionIndices ?? []);
    selected = [...registry.values()].filter((s) => mine.has(s.sessionIndex));
    delete req.session.login; // the IdP's own (browser) session ends here
    delete req.session.sessionIndices;
  }
  if (selected.length === 0) return badRequest(res, 404, 'no matching SP session');
  log(`IdP-initiated logout of ${selected.map((s) => `${s.nameId}/${s.sessionIndex}`).join(', ')}`);
  req.sloQueue = selected; // picked up by LogoutStore.save for the new transaction
  return samlp.logout(logoutOptions(req, selected))(req, res, next);
}

// Unsolicited (IdP-initiated) SSO: GET /saml/sso/init?login=..&password=..&RelayState=..
function handleSsoInit(req, res, next) {
  const login = req.query.login;
  if (typeof login !== 'string' || login === '') return badRequest(res, 400, 'missing login');
  const [user, e] = checkCredentials(login, req.query.password);
  if (!user) return badRequest(res, 401, e);
  return issueResponse(req, res, next, login, user, null, req.query.RelayState ?? '');
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

const app = express();
app.disable('x-powered-by');
app.set('query parser', 'simple');
if (env.SAML_IDP_ACCESS_LOG === '1') {
  app.use((req, res, nextFn) => {
    res.on('finish', () => log(`${req.method} ${req.originalUrl.split('?')[0]} -> ${res.statusCode}`));
    nextFn();
  });
}
app.use(express.urlencoded({ extended: false, limit: '2mb' }));
app.use(session({
  name: 'saml_idp_sid',
  secret: crypto.randomBytes(32).toString('hex'),
  resave: false,
  saveUninitialized: false,
  cookie: { httpOnly: true, sameSite: 'lax', path: '/' },
}));

let metadataMiddleware; // built once entityId is known
app.get(METADATA_PATH, (req, res) => metadataMiddleware(req, res));
app.get(SSO_PATH, handleSso);
app.post(SSO_PATH, handleSso);
app.post(SSO_LOGIN_PATH, handleLogin);
app.get(SSO_INIT_PATH, handleSsoInit);
app.get(SLO_PATH, handleSlo);
app.post(SLO_PATH, handleSlo);
app.get(SLO_INIT_PATH, handleSloInit);

// Admin API (JSON, no auth; loopback only)
const admin = express.Router();
admin.use(express.json());
admin.get('/users', (req, res) => res.json(Object.fromEntries(users)));
admin.get('/users/:login', (req, res) => (users.has(req.params.login)
  ? res.json(users.get(req.params.login)) : res.status(404).json({ error: 'no such user' })));
admin.put('/users/:login', (req, res) => {
  const [user, err] = normalizeUser(req.params.login, req.body);
  if (err) return res.status(400).json({ error: err });
  users.set(req.params.login, user);
  return res.json(user);
});
admin.delete('/users/:login', (req, res) => (users.delete(req.params.login)
  ? res.status(204).end() : res.status(404).json({ error: 'no such user' })));
admin.get('/config', (req, res) => res.json(cfg));
admin.put('/config', (req, res) => {
  const body = req.body;
  if (!body || typeof body !== 'object' || Array.isArray(body)) return res.status(400).json({ error: 'body must be an object' });
  const err = configError(body);
  if (err) return res.status(400).json({ error: err });
  const { overrides, ...rest } = body;
  Object.assign(cfg, rest);
  if (overrides) {
    for (const [k, v] of Object.entries(overrides)) {
      if (v === null) delete cfg.overrides[k]; else cfg.overrides[k] = v;
    }
  }
  log(`config: ${JSON.stringify(cfg)}`);
  return res.json(cfg);
});
admin.get('/sessions', (req, res) => res.json([...registry.values()].map((s) => ({
  login: s.login, nameId: s.nameId, nameIdFormat: s.nameIdFormat, sessionIndex: s.sessionIndex,
  sp: s.serviceProviderId, created_at: s.created_at,
}))));
admin.delete('/sessions', (req, res) => { registry.clear(); res.status(204).end(); });
app.use('/__admin', admin);

app.use((req, res) => badRequest(res, 404, `no route ${req.method} ${req.path}`));
// eslint-disable-next-line no-unused-vars
app.use((err, req, res, nextFn) => {
  if (res.headersSent) return log(`error after headers sent: ${err.stack ?? err}`);
  const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 400;
  return badRequest(res, status, err.message ?? String(err));
});

const server = http.createServer(app);
server.on('error', (err) => {
  log(`cannot listen: ${err.message}`);
  process.exit(1);
});
await new Promise((resolve) => server.listen(requestedPort, '127.0.0.1', resolve));
const { port } = server.address();
baseUrl = `http://127.0.0.1:${port}`;
entityId = env.SAML_IDP_ENTITY_ID || `${baseUrl}${METADATA_PATH}`;
metadataMiddleware = samlp.metadata({
  issuer: entityId,
  cert: idpCertPem,
  profileMapper: ProfileMapper,
  redirectEndpointPath: SSO_PATH,
  postEndpointPath: SSO_PATH,
  logoutEndpointPaths: { redirect: SLO_PATH },
});

// Serve one real request through the whole stack before announcing readiness.
const metadataXml = await new Promise((resolve, reject) => {
  http.get(`${baseUrl}${METADATA_PATH}`, (r) => {
    let body = '';
    r.setEncoding('utf8');
    r.on('data', (c) => { body += c; });
    r.on('end', () => (r.statusCode === 200 ? resolve(body) : reject(new Error(`metadata: HTTP ${r.statusCode}`))));
  }).on('error', reject);
}).catch((err) => die(`self-check failed: ${err.message}`));
if (env.SAML_IDP_METADATA_FILE) fs.writeFileSync(env.SAML_IDP_METADATA_FILE, metadataXml);

log(`listening on ${baseUrl} entityID=${entityId} SP=${spEntityId} ACS=${spAcsUrl} SLO=${spSloUrl ?? '(none)'}`
  + ` config=${JSON.stringify(cfg)}`);
process.stdout.write(`${JSON.stringify({
  ready: true,
  port,
  base_url: baseUrl,
  entity_id: entityId,
  metadata_url: `${baseUrl}${METADATA_PATH}`,
  sso_url: `${baseUrl}${SSO_PATH}`,
  slo_url: `${baseUrl}${SLO_PATH}`,
})}\n`);

let stopping = false;
function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  log(`exiting (${reason})`);
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (env.SAML_IDP_IGNORE_STDIN !== '1') {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
