// node-oidc-provider as the upstream OpenID Provider of authgate's sign-in tests.
//
// One confidential client (authgate, client_secret_basic, PKCE), RS256 ID tokens, HTTPS on a
// loopback port with the test suite's throwaway CA. Its interactions are answered by the test:
// the login prompt of /interaction/<uid> signs in the account named by `?account=` (without it,
// a small HTML form asks for one), a consent prompt is granted. The accounts and their claims are set by the test with
// `PUT /test/accounts/<id>` (a JSON object of claims); the scope `groups` releases `groups`.
//
// Clients authenticating with private_key_jwt are added by the test with
// `PUT /test/clients/<id>` ({"jwks": <the client's JWK Set>, "redirect_uris": [...],
// "strict_audience": bool}): their keys are authgate's, as its JWKS URL publishes them, held
// here as the provider's copy (a provider that cached the JWKS). `strict_audience` makes the
// provider accept only the token endpoint URL as the assertion's `aud` and require an `x5t`
// header, as Entra ID does (node-oidc-provider itself also accepts the issuer).
//
// Configuration from the environment (tests/upstream/provider.py sets every variable):
//   PORT, ISSUER, TLS_CERT, TLS_KEY, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';

import Provider, { errors } from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const PORT = Number(env('PORT'));
const ISSUER = env('ISSUER');
const accounts = new Map();
const strictAudience = new Set();

const signingKey = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

const configuration = {
  clients: [
    {
      client_id: env('CLIENT_ID'),
      client_secret: env('CLIENT_SECRET'),
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: env('REDIRECT_URI').split(' '),
    },
  ],
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ ...(accounts.get(id) ?? {}), sub: id }),
  }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  assertJwtClientAuthClaimsAndHeader: async (ctx, claims, header, client) => {
    if (!strictAudience.has(client.clientId)) return;
    if (claims.aud !== ctx.oidc.urlFor('token')) {
      throw new errors.InvalidClientAuth('audience (aud) must be the token endpoint URL');
    }
    if (typeof header.x5t !== 'string') {
      throw new errors.InvalidClientAuth('the x5t header is required');
    }
  },
  features: { devInteractions: { enabled: false } },
};

const provider = new Provider(ISSUER, configuration);
provider.proxy = false;

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

// The login prompt as a person sees it (the browser tests fill it in): a form that comes back
// to the same interaction with `?account=`.
function signInPage(res, uid) {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body><h1>Test identity provider</h1>
<form method="get" action="/interaction/${encodeURIComponent(uid)}" id="idp-form">
<label for="account">Account</label> <input id="account" name="account" required>
<button type="submit" id="idp-sign-in">Sign in</button>
</form></body></html>`);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const account = new URL(req.url, ISSUER).searchParams.get('account');
    if (!account) {
      signInPage(res, details.uid);
      return;
    }
    if (account === 'refuse') {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'The person refused',
      });
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: account } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { consent: { grantId } },
    { mergeWithLastSubmission: true },
  );
}

async function readJson(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return JSON.parse(body);
}

async function setAccount(req, res, id) {
  accounts.set(id, await readJson(req));
  json(res, 200, { id });
}

async function setClient(req, res, id) {
  const { jwks, redirect_uris: redirectUris, strict_audience: strict } = await readJson(req);
  await provider.Client.adapter.upsert(id, {
    client_id: id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: redirectUris,
  });
  if (strict) strictAudience.add(id);
  else strictAudience.delete(id);
  json(res, 200, { id });
}

const callback = provider.callback();
const tls = { cert: fs.readFileSync(env('TLS_CERT')), key: fs.readFileSync(env('TLS_KEY')) };
const server = https.createServer(tls, (req, res) => {
  const fail = (error) => json(res, 500, { error: String(error) });
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch(fail);
    return;
  }
  const account = req.url.match(/^\/test\/accounts\/([^/?]+)$/);
  if (account && req.method === 'PUT') {
    setAccount(req, res, decodeURIComponent(account[1])).catch(fail);
    return;
  }
  const client = req.url.match(/^\/test\/clients\/([^/?]+)$/);
  if (client && req.method === 'PUT') {
    setClient(req, res, decodeURIComponent(client[1])).catch(fail);
    return;
  }
  callback(req, res);
});
server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`oidc-provider ${ISSUER} listening on 127.0.0.1:${PORT}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
