// A real OpenID provider for the tests (npm's oidc-provider, OpenID-certified), behaving like
// Fedora's Ipsilon where copr-pools cares: client_secret_post, PKCE, RS256 ID tokens, and the
// username and groups only in UserInfo. It signs in the `login_hint` user (or the first one)
// without a form, and consents automatically. Loopback only.
//
// Environment: IDP_PORT (9090), IDP_USERS (a JSON file {"alice": {"name", "email", "groups"}}),
// CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (comma-separated).
import http from 'node:http';
import fs from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const env = process.env;
const port = Number(env.IDP_PORT || 9090);
const issuer = `http://127.0.0.1:${port}`;
const GROUPS = 'https://id.fedoraproject.org/scope/groups';
const users = env.IDP_USERS ? JSON.parse(fs.readFileSync(env.IDP_USERS, 'utf8')) : {
  alice: { email: 'alice@example.test', name: 'Alice Liddell', groups: ['packager', 'team-a', 'app-admins'] },
  bob: { email: 'bob@example.test', name: 'Bob', groups: ['team-b'] },
};
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const provider = new Provider(issuer, {
  clients: [{
    client_id: env.CLIENT_ID || 'test-app',
    client_secret: env.CLIENT_SECRET || 'test-secret',
    redirect_uris: (env.REDIRECT_URIS || 'http://127.0.0.1:3000/auth/callback').split(','),
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-sig', use: 'sig', alg: 'RS256' }] },
  scopes: ['openid', 'profile', 'email', GROUPS],
  claims: {
    openid: ['sub'],
    profile: ['name', 'nickname', 'preferred_username'],
    email: ['email', 'email_verified'],
    [GROUPS]: ['groups'],
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const u = users[id];
    if (!u) return undefined;
    return {
      accountId: id,
      claims: async () => ({
        sub: id, nickname: id, preferred_username: id, name: u.name, email: u.email,
        email_verified: true, groups: u.groups || [],
      }),
    };
  },
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const prompt = details.prompt;
  if (prompt.name === 'login') {
    const id = details.params.login_hint || env.IDP_DEFAULT_USER || Object.keys(users)[0];
    const result = users[id]
      ? { login: { accountId: id } }
      : { error: 'access_denied', error_description: `unknown test user ${id}` };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
http.createServer((req, res) => (req.url.startsWith('/interaction/')
  ? interaction(req, res).catch((e) => { res.statusCode = 500; res.end(String(e)); })
  : callback(req, res)))
  .listen(port, '127.0.0.1', () => console.log(`IdP ready: ${issuer}`));
