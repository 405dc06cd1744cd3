// A real OpenID provider for Sable's tests: panva/oidc-provider with its development
// interactions (any password is accepted for a known account). Started by tests/support/oidc.py.
// Env: REDIRECT_URIS (comma-separated), ACCOUNTS (JSON: id -> claims). Prints "READY <issuer>".
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
const accounts = JSON.parse(process.env.ACCOUNTS || '{}');
const jwk = (type, opts) => generateKeyPairSync(type, opts).privateKey.export({ format: 'jwk' });
const keys = [
  { ...jwk('rsa', { modulusLength: 2048 }), kid: 'rs1', use: 'sig' },
  { ...jwk('ec', { namedCurve: 'P-256' }), kid: 'es1', use: 'sig' },
  { ...jwk('ed25519'), kid: 'ed1', use: 'sig' },
];

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const client = (client_id, extra = {}) => ({
    client_id, client_secret: `${client_id}-secret`, token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: redirectUris, grant_types: ['authorization_code'], response_types: ['code'], ...extra,
  });
  const provider = new Provider(issuer, {
    clients: [
      client('sable'),                                              // RS256, the default
      client('sable-es', { id_token_signed_response_alg: 'ES256' }),
      client('sable-ed', { id_token_signed_response_alg: 'EdDSA' }),
    ],
    jwks: { keys },
    cookies: { keys: ['test-cookie-key-not-secret'] },
    pkce: { required: () => true },
    conformIdTokenClaims: false,  // the scopes' claims in the ID token, as most providers do
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username'],
              groups: ['groups'] },
    features: { devInteractions: { enabled: true } },
    async findAccount(ctx, id) {
      const a = accounts[id];
      return a && { accountId: id, async claims() { return { sub: id, ...a }; } };
    },
  });
  server.on('request', provider.callback());
  console.log(`READY ${issuer}`);
});
process.on('SIGTERM', () => process.exit(0));
