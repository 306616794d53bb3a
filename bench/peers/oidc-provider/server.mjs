// node-oidc-provider configured as authgate's benchmark peer.
//
// One confidential client (client_secret_basic, PKCE required), refresh-token rotation, the
// token lifetimes of authgate's defaults, ES256 for JWT access tokens, two resources (one with
// JWT access tokens, one with opaque ones), client_credentials, introspection and revocation.
// Interactions are answered automatically: the benchmark user is signed in and every consent
// is granted. Storage is the provider's in-memory adapter with room for a benchmark's tokens
// (its default store keeps only the 1000 most recent entries).
//
// Configuration comes from the environment (the harness sets every variable):
//   PORT, ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, RESOURCE_JWT, RESOURCE_OPAQUE, SCOPE,
//   BENCH_USER
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const PORT = Number(env('PORT'));
const ISSUER = env('ISSUER');
const SCOPE = env('SCOPE');
const RESOURCE_JWT = env('RESOURCE_JWT');
const RESOURCE_OPAQUE = env('RESOURCE_OPAQUE');
const BENCH_USER = env('BENCH_USER');

// authgate's defaults (src/authgate/config.py).
const ACCESS_TOKEN_TTL = 3600;
const CODE_TTL = 600;
const REFRESH_TOKEN_TTL = 30 * 86400;
const SESSION_TTL = 12 * 3600;

const signingKey = {
  ...crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  alg: 'ES256',
  use: 'sig',
};

const store = new LRU({ maxSize: 20_000_000 });

const resourceServers = {
  [RESOURCE_JWT]: 'jwt',
  [RESOURCE_OPAQUE]: 'opaque',
};

const configuration = {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [
    {
      client_id: env('CLIENT_ID'),
      client_secret: env('CLIENT_SECRET'),
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: [env('REDIRECT_URI')],
      scope: SCOPE,
    },
  ],
  scopes: ['openid', 'offline_access', SCOPE],
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  // authgate issues a refresh token to every client allowed the grant and does not tie it to
  // the browser session.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: CODE_TTL,
    ClientCredentials: ACCESS_TOKEN_TTL,
    RefreshToken: REFRESH_TOKEN_TTL,
    Grant: REFRESH_TOKEN_TTL,
    Interaction: 3600,
    Session: SESSION_TTL,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE_JWT,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const format = resourceServers[resourceIndicator];
        if (!format) throw new Provider.errors.InvalidTarget();
        return {
          scope: SCOPE,
          audience: resourceIndicator,
          accessTokenTTL: ACCESS_TOKEN_TTL,
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
        };
      },
    },
  },
};

const provider = new Provider(ISSUER, configuration);
provider.proxy = false;

// The interaction endpoint: sign the benchmark user in, grant whatever the prompt asks for.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: BENCH_USER } },
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
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { consent: { grantId } },
    { mergeWithLastSubmission: true },
  );
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
    return;
  }
  callback(req, res);
});
server.keepAliveTimeout = 75_000;
server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`oidc-provider ${ISSUER} listening on 127.0.0.1:${PORT}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
