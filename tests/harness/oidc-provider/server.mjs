// Test-only OpenID Provider for jitbridge integration tests.
//
// Runs the real `oidc-provider` package on 127.0.0.1 with scriptable (browser-less)
// login interactions, an admin API to change accounts at run time, and a "tamper"
// switch that makes the token / userinfo / authorization responses carry forged
// values for negative tests. See README.md for the interface.
//
// stdout carries exactly one line (the ready line); everything else goes to stderr.

import * as http from 'node:http';
import * as crypto from 'node:crypto';
import { Buffer } from 'node:buffer';
import process from 'node:process';

// oidc-provider prints NOTICEs with console.info (stdout). Keep stdout clean for the
// ready line: route every console method to stderr *before* loading oidc-provider.
for (const m of ['log', 'info', 'debug', 'warn', 'trace']) {
  console[m] = (...args) => console.error(...args);
}
const log = (...args) => console.error('[op]', ...args);

const { Provider } = await import('oidc-provider');
const jose = await import('jose');

// ---------------------------------------------------------------------------
// Configuration from the environment
// ---------------------------------------------------------------------------

function parseJsonEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  try {
    return JSON.parse(raw);
  } catch (err) {
    console.error(`[op] invalid JSON in ${name}: ${err.message}`);
    process.exit(2);
  }
}

const portEnv = process.env.OP_PORT ?? '0';
const requestedPort = Number.parseInt(portEnv, 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error(`[op] invalid OP_PORT: ${portEnv}`);
  process.exit(2);
}

const clients = parseJsonEnv('OP_CLIENTS', [{
  client_id: 'jitbridge',
  client_secret: 'jitbridge-secret',
  redirect_uris: ['http://127.0.0.1:9/cb'],
}]);
if (!Array.isArray(clients)) {
  console.error('[op] OP_CLIENTS must be a JSON array');
  process.exit(2);
}

const accountsInit = parseJsonEnv('OP_ACCOUNTS', {
  alice: {
    email: 'alice@example.com',
    email_verified: true,
    given_name: 'Alice',
    family_name: 'Liddell',
    preferred_username: 'alice',
    groups: ['staff', 'admins'],
    department: 'R&D',
  },
});
if (!accountsInit || typeof accountsInit !== 'object' || Array.isArray(accountsInit)) {
  console.error('[op] OP_ACCOUNTS must be a JSON object');
  process.exit(2);
}
const accounts = new Map(Object.entries(accountsInit));

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

async function genKey(alg, kid) {
  const opts = { extractable: true };
  if (alg.startsWith('RS')) opts.modulusLength = 2048;
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, opts);
  const privateJwk = { ...(await jose.exportJWK(privateKey)), kid, alg, use: 'sig' };
  const publicJwk = { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
  const publicPem = crypto.createPublicKey({ key: publicJwk, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' });
  const privatePem = crypto.createPrivateKey({ key: privateJwk, format: 'jwk' })
    .export({ type: 'pkcs8', format: 'pem' });
  return {
    kid, alg, privateKey, publicKey, privateJwk, publicJwk, publicPem, privatePem,
  };
}

const [k1, e1, k2, foreign, unknown] = await Promise.all([
  genKey('RS256', 'k1'), // genuine signing key (RS256)
  genKey('ES256', 'e1'), // genuine signing key (ES256)
  genKey('RS256', 'k2'), // "rotated" key, published only once tamper mode `rotated` is set
  genKey('RS256', 'k1'), // foreign key that impersonates kid k1 (never published)
  genKey('RS256', 'k-unknown'), // key with an unpublished kid
]);
const genuineByKid = new Map([[k1.kid, k1], [e1.kid, e1]]);

// ---------------------------------------------------------------------------
// Tampering
// ---------------------------------------------------------------------------

const TAMPER_MODES = new Set([
  'none', 'wrong_iss', 'wrong_aud', 'expired', 'future_iat', 'wrong_nonce', 'no_nonce',
  'alg_none', 'hs256_pubkey', 'foreign_key', 'unknown_kid', 'rotated', 'wrong_azp',
  'sub_mismatch_userinfo', 'bad_iss_param', 'missing_iss_param',
]);
const ID_TOKEN_MODES = new Set([
  'wrong_iss', 'wrong_aud', 'expired', 'future_iat', 'wrong_nonce', 'no_nonce', 'alg_none',
  'hs256_pubkey', 'foreign_key', 'unknown_kid', 'rotated', 'wrong_azp',
]);
let tamperMode = 'none';
let publishK2 = false; // sticky: once `rotated` was set, k2 stays in the JWKS

const b64u = (input) => Buffer.from(input).toString('base64url');
const encJson = (obj) => b64u(JSON.stringify(obj));

function decodeJws(compact) {
  const [h, p] = compact.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
  };
}

async function signWith(key, header, payload) {
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ ...header, alg: key.alg, kid: key.kid })
    .sign(key.privateKey);
}

async function forgeIdToken(genuine, mode, clientId) {
  const { header, payload } = decodeJws(genuine);
  const now = Math.floor(Date.now() / 1000);
  // "re-signed with the genuine key": the key the provider used (k1 for RS256 clients,
  // e1 for ES256 clients), keeping its kid.
  const genuineKey = genuineByKid.get(header.kid) ?? k1;
  switch (mode) {
    case 'wrong_iss':
      return signWith(genuineKey, header, { ...payload, iss: 'http://evil.example' });
    case 'wrong_aud':
      return signWith(genuineKey, header, { ...payload, aud: 'someone-else' });
    case 'expired':
      return signWith(genuineKey, header, { ...payload, exp: now - 3600, iat: now - 7200 });
    case 'future_iat':
      return signWith(genuineKey, header, { ...payload, iat: now + 3600, exp: now + 7200 });
    case 'wrong_nonce':
      return signWith(genuineKey, header, { ...payload, nonce: 'forged-nonce' });
    case 'no_nonce': {
      const { nonce, ...rest } = payload;
      return signWith(genuineKey, header, rest);
    }
    case 'wrong_azp':
      return signWith(genuineKey, header, {
        ...payload, aud: [clientId, 'other-client'], azp: 'other-client',
      });
    case 'alg_none':
      return `${encJson({ alg: 'none' })}.${encJson(payload)}.`;
    case 'hs256_pubkey': {
      const input = `${encJson({ alg: 'HS256', kid: 'k1' })}.${encJson(payload)}`;
      const sig = crypto.createHmac('sha256', Buffer.from(k1.publicPem, 'utf8'))
        .update(input).digest('base64url');
      return `${input}.${sig}`;
    }
    case 'foreign_key':
      return signWith(foreign, { ...header, alg: 'RS256' }, payload);
    case 'unknown_kid':
      return signWith(unknown, { ...header, alg: 'RS256' }, payload);
    case 'rotated':
      return signWith(k2, { ...header, alg: 'RS256' }, payload);
    default:
      return genuine;
  }
}

// ---------------------------------------------------------------------------
// Small HTTP helpers for our own (non-oidc-provider) routes
// ---------------------------------------------------------------------------

async function readBody(req, limit = 1024 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(ctx) {
  const raw = await readBody(ctx.req);
  try {
    return JSON.parse(raw);
  } catch {
    throw Object.assign(new Error('invalid JSON body'), { status: 400 });
  }
}

async function readForm(ctx) {
  return new URLSearchParams(await readBody(ctx.req));
}

function sendJson(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = JSON.stringify(body);
}

const htmlEscape = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

// ---------------------------------------------------------------------------
// Bind first, then construct the Provider with the real port.
// ---------------------------------------------------------------------------

let handler = (req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const server = http.createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requestedPort, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

const configuration = {
  clients,
  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  responseTypes: ['code'],
  jwks: { keys: [k1.privateJwk, e1.privateJwk] },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'department'],
    groups: ['groups'],
  },
  // Put the scope-requested claims into the ID token itself (userinfo serves them too).
  conformIdTokenClaims: false,
  // Explicit lifetimes (seconds); also silences oidc-provider's "default ttl" NOTICEs.
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 86400,
    Grant: 86400,
    Interaction: 3600,
    Session: 86400,
  },
  pkce: { required: () => true }, // S256 is the only method oidc-provider v9 supports
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    long: { httpOnly: true, sameSite: 'lax', signed: true },
    short: { httpOnly: true, sameSite: 'lax', signed: true },
  },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        // Confirm-by-default form that auto-submits in a browser; a scripted client
        // POSTs its fields (xsrf, logout=yes) to its action (/session/end/confirm).
        const withLogout = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>');
        ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Logout</title></head>
<body>${withLogout}<script>document.forms[0].submit()</script>
<noscript><button type="submit" form="op.logoutForm">Sign out</button></noscript></body></html>`;
      },
    },
    backchannelLogout: { enabled: true },
    userinfo: { enabled: true },
  },
  interactions: {
    url: async (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(ctx, id) {
    if (!accounts.has(id)) return undefined;
    return {
      accountId: id,
      async claims() {
        const claims = accounts.get(id) ?? {};
        return { ...claims, sub: id };
      },
    };
  },
  // First-party clients: grant every requested OIDC scope / claim without a consent screen.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const accountId = oidc.account.accountId;
    const clientId = oidc.client.clientId;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (grant && (grant.accountId !== accountId || grant.clientId !== clientId)) grant = undefined;
    grant ??= new oidc.provider.Grant({ accountId, clientId });
    const scopes = [...oidc.requestParamOIDCScopes];
    if (scopes.length) grant.addOIDCScope(scopes.join(' '));
    const claims = [...oidc.requestParamClaims];
    if (claims.length) grant.addOIDCClaims(claims);
    await grant.save();
    return grant;
  },
  // oidc-provider refuses outgoing requests (backchannel logout) to special-use IPs such
  // as 127.0.0.1. This harness only talks to loopback relying parties, so lift that guard
  // for loopback targets.
  fetch(url, options) {
    const target = new URL(url);
    if (LOOPBACK_HOSTS.has(target.hostname)) {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    }
    return globalThis.fetch(url, options);
  },
  renderError(ctx, out, error) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oops</title></head><body><h1>${htmlEscape(out.error)}</h1><p id="error_description">${htmlEscape(out.error_description ?? '')}</p></body></html>`;
    log('renderError', out, error?.message ?? '');
  },
};

const provider = new Provider(issuer, configuration);

// Static clients are validated lazily by oidc-provider; load them now so that bad
// OP_CLIENTS metadata fails at start-up instead of in the middle of a test.
for (const c of clients) {
  try {
    if (!(await provider.Client.find(String(c.client_id)))) throw new Error('not found');
  } catch (err) {
    console.error(`[op] invalid client ${JSON.stringify(c.client_id)} in OP_CLIENTS: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`);
    process.exit(2);
  }
}

for (const ev of [
  'server_error', 'authorization.error', 'grant.error', 'userinfo.error', 'end_session.error',
  'backchannel.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error',
]) {
  provider.on(ev, (...args) => {
    const err = args.find((a) => a instanceof Error);
    log(ev, err ? `${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}` : '');
  });
}
provider.on('backchannel.success', (ctx, client, accountId, sid) => {
  log('backchannel.success', client.clientId, accountId, sid);
});

// ---------------------------------------------------------------------------
// Interaction routes (browser-less login)
// ---------------------------------------------------------------------------

async function interactionRoutes(ctx) {
  const m = /^\/interaction\/([^/]+)(\/login)?\/?$/.exec(ctx.path);
  if (!m) return false;
  const [, uid, login] = m;

  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    sendJson(ctx, 400, { error: 'invalid_interaction', error_description: err.message });
    return true;
  }
  if (details.uid !== uid) {
    sendJson(ctx, 400, { error: 'invalid_interaction', error_description: 'interaction uid mismatch' });
    return true;
  }
  const { prompt, params } = details;

  // Consent is never shown: grant what was asked for and resume right away.
  const finishConsent = async (accountId) => {
    const grant = new provider.Grant({ accountId, clientId: params.client_id });
    if (params.scope) grant.addOIDCScope(String(params.scope));
    if (prompt.details?.missingOIDCClaims?.length) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    if (params.claims) {
      try {
        const c = JSON.parse(params.claims);
        const names = [...Object.keys(c.id_token ?? {}), ...Object.keys(c.userinfo ?? {})];
        if (names.length) grant.addOIDCClaims(names);
      } catch { /* ignore */ }
    }
    return grant.save();
  };

  if (!login && ctx.method === 'GET') {
    if (prompt.name === 'consent') {
      const grantId = await finishConsent(details.session.accountId);
      const to = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      ctx.status = 303;
      ctx.redirect(to);
      return true;
    }
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign-in</title></head><body>
<h1>Sign-in to ${htmlEscape(params.client_id)}</h1>
<p>prompt: <span id="prompt">${htmlEscape(prompt.name)}</span></p>
<form id="login" method="post" action="/interaction/${htmlEscape(uid)}/login">
<input type="text" name="login" placeholder="account id" autofocus>
<input type="password" name="password" placeholder="(ignored)">
<button type="submit">Sign-in</button>
</form></body></html>`;
    return true;
  }

  if (login && ctx.method === 'POST') {
    const form = await readForm(ctx);
    const accountId = form.get('login');
    if (!accountId || !accounts.has(accountId)) {
      sendJson(ctx, 400, { error: 'unknown_account', error_description: `no such account: ${accountId ?? ''}` });
      return true;
    }
    const grantId = await finishConsent(accountId);
    const to = await provider.interactionResult(ctx.req, ctx.res, {
      login: { accountId, remember: false },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(to);
    return true;
  }

  sendJson(ctx, 405, { error: 'method_not_allowed' });
  return true;
}

// ---------------------------------------------------------------------------
// Admin routes
// ---------------------------------------------------------------------------

async function adminRoutes(ctx) {
  if (ctx.path !== '/__admin' && !ctx.path.startsWith('/__admin/')) return false;
  const sub = ctx.path.slice('/__admin'.length);

  let m = /^\/accounts\/([^/]+)$/.exec(sub);
  if (m) {
    const id = decodeURIComponent(m[1]);
    if (ctx.method === 'PUT') {
      const claims = await readJson(ctx);
      if (!claims || typeof claims !== 'object' || Array.isArray(claims)) {
        sendJson(ctx, 400, { error: 'body must be a JSON object' });
        return true;
      }
      accounts.set(id, claims);
      sendJson(ctx, 200, { id, claims });
      return true;
    }
    if (ctx.method === 'DELETE') {
      const existed = accounts.delete(id);
      sendJson(ctx, existed ? 200 : 404, { id, deleted: existed });
      return true;
    }
    if (ctx.method === 'GET') {
      if (!accounts.has(id)) sendJson(ctx, 404, { error: 'not found' });
      else sendJson(ctx, 200, { id, claims: accounts.get(id) });
      return true;
    }
  }

  if (sub === '/accounts' && ctx.method === 'GET') {
    sendJson(ctx, 200, Object.fromEntries(accounts));
    return true;
  }

  if (sub === '/tamper') {
    if (ctx.method === 'GET') {
      sendJson(ctx, 200, { mode: tamperMode });
      return true;
    }
    if (ctx.method === 'PUT') {
      const body = await readJson(ctx);
      const mode = body?.mode;
      if (typeof mode !== 'string' || !TAMPER_MODES.has(mode)) {
        sendJson(ctx, 400, { error: 'unknown mode', modes: [...TAMPER_MODES] });
        return true;
      }
      tamperMode = mode;
      // `withdraw_k2`: keep signing with k2 but stop publishing it (a withdrawn key).
      if (mode === 'rotated') publishK2 = body?.withdraw_k2 !== true;
      log('tamper mode ->', mode);
      sendJson(ctx, 200, { mode: tamperMode });
      return true;
    }
  }

  // `POST /__admin/sign {kid, payload}`: a compact JWS of `payload` signed with one of the
  // provider's keys (k1, e1, k2), for tests that need a token the provider would sign, such as
  // a back-channel logout token, without a browser logout.
  if (sub === '/sign' && ctx.method === 'POST') {
    const body = await readJson(ctx);
    const key = [k1, e1, k2].find((k) => k.kid === body?.kid);
    if (!key || !body?.payload || typeof body.payload !== 'object') {
      sendJson(ctx, 400, { error: 'need {kid: k1|e1|k2, payload: {...}}' });
      return true;
    }
    const token = await signWith(key, { typ: body.typ ?? 'logout+jwt' }, body.payload);
    sendJson(ctx, 200, { token });
    return true;
  }

  if (sub === '/keys' && ctx.method === 'GET') {
    sendJson(ctx, 200, {
      k1_public_pem: k1.publicPem,
      k1_public_jwk: k1.publicJwk,
      e1_public_pem: e1.publicPem,
      e1_public_jwk: e1.publicJwk,
      k2_public_pem: k2.publicPem,
      k2_public_jwk: k2.publicJwk,
      k2_published: publishK2,
      foreign_public_pem: foreign.publicPem,
      unknown_public_pem: unknown.publicPem,
    });
    return true;
  }

  sendJson(ctx, 404, { error: 'no such admin endpoint' });
  return true;
}

// ---------------------------------------------------------------------------
// Middleware: own routes first, then oidc-provider, then tampering of its output.
// ---------------------------------------------------------------------------

provider.use(async (ctx, next) => {
  try {
    if (await adminRoutes(ctx)) return;
    if (await interactionRoutes(ctx)) return;
  } catch (err) {
    log('harness route error', err);
    sendJson(ctx, err.status ?? 500, { error: 'harness_error', error_description: err.message });
    return;
  }

  await next();

  const route = ctx.oidc?.route;

  if (route === 'jwks' && publishK2 && ctx.body && Array.isArray(ctx.body.keys)) {
    ctx.body = { keys: [...ctx.body.keys, k2.publicJwk] };
  }

  if (
    route === 'token'
    && ctx.status === 200
    && ID_TOKEN_MODES.has(tamperMode)
    && ctx.oidc.params?.grant_type === 'authorization_code'
    && ctx.body && typeof ctx.body === 'object' && typeof ctx.body.id_token === 'string'
  ) {
    const forged = await forgeIdToken(ctx.body.id_token, tamperMode, ctx.oidc.client?.clientId);
    ctx.body = { ...ctx.body, id_token: forged };
    log(`tampered id_token (${tamperMode})`);
  }

  if (
    route === 'userinfo'
    && tamperMode === 'sub_mismatch_userinfo'
    && ctx.status === 200
    && ctx.body && typeof ctx.body === 'object'
  ) {
    ctx.body = { ...ctx.body, sub: 'someone-else' };
    log('tampered userinfo sub');
  }

  if (
    (route === 'authorization' || route === 'resume')
    && (tamperMode === 'bad_iss_param' || tamperMode === 'missing_iss_param')
    && ctx.status >= 300 && ctx.status < 400
  ) {
    const location = ctx.response.get('Location');
    let url;
    try { url = new URL(location); } catch { url = undefined; }
    if (url && url.searchParams.get('iss') === issuer) {
      if (tamperMode === 'bad_iss_param') url.searchParams.set('iss', 'http://evil.example');
      else url.searchParams.delete('iss');
      ctx.redirect(url.href); // keeps the 303 status
      log(`tampered authorization response iss (${tamperMode})`);
    }
  }
});

handler = provider.callback();

// ---------------------------------------------------------------------------
// Ready line + lifecycle
// ---------------------------------------------------------------------------

process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
log(`listening on ${issuer}`);

let stopping = false;
function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  log(`exiting (${reason})`);
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('close', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();
