// A real OpenID provider for the tests: the npm package `oidc-provider` (pinned in idp.py), on 127.0.0.1.
//
// Run: node idp.js CONFIG.json   (idp.py writes the config and starts this; see IdentityProvider there)
//
// CONFIG: {
//   "oidc_provider": "<the package's directory>",
//   "port": 0,                                   // 0: any free port
//   "accounts": {"alice": {"email": "...", "groups": ["..."]}},
//   "resources": {"http://127.0.0.1:P/mcp": {"format": "jwt" | "opaque", "scope": "mcp"}},
//   "access_token_ttl": 60,                      // seconds
//   "clients": [{client metadata: client_id, client_secret?, redirect_uris, grant_types, ...}],
//   "jwks_file": "<a private JWKS>"              // optional: signing keys; one RSA key is made when absent
// }
//
// stdout carries one JSON line per event: {"issuer": ..., "kids": [...]} once listening, then one reply per
// command read from stdin, one JSON object a line:
//   {"command": "rotate_keys", "keep_old": true}    a new RS256 key signs from now on (first in the JWKS)
//   {"command": "add_resource", "url": "...", "format": "jwt", "scope": "mcp"}
// Closing stdin stops the provider. The provider's own notices go to stderr.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

// oidc-provider prints notices with console.info: keep stdout for the JSON lines above.
console.info = console.log = (...args) => console.error(...args);
const say = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const main = JSON.parse(readFileSync(join(config.oidc_provider, 'package.json'), 'utf8')).main;
const { default: Provider, errors } = await import(pathToFileURL(join(config.oidc_provider, main)).href);
// The package's own in-memory adapter, made without a store of its own: every provider this process builds then
// shares the module's storage (a provider given the class makes a fresh store), so rotating keys keeps the state.
const { default: MemoryAdapter } = await import(
  pathToFileURL(join(config.oidc_provider, 'lib/adapters/memory_adapter.js')).href);
const adapter = (model) => new MemoryAdapter(model);

const accounts = config.accounts;
const resources = new Map(Object.entries(config.resources));
const ttl = config.access_token_ttl;
const cookieKeys = [randomBytes(32).toString('base64url')];  // the same for every provider this process builds

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

let keys = config.jwks_file ? JSON.parse(readFileSync(config.jwks_file, 'utf8')).keys : [newKey()];

function build(issuer) {
  return new Provider(issuer, {
    adapter,
    clients: config.clients,
    jwks: { keys },
    cookies: { keys: cookieKeys },
    async findAccount(ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;  // an unknown login name: the login prompt stays unresolved
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: account.email, email_verified: true, groups: account.groups };
        },
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    // The resources' scopes are the provider's too: a client may register for them (RFC 7591 `scope`).
    scopes: ['openid', 'offline_access', ...new Set([...resources.values()].flatMap((r) => r.scope.split(' ')))],
    // The account's email and groups ride in every access token (JWT claims, or the introspection answer).
    async extraTokenClaims(ctx, token) {
      const account = token.accountId ? accounts[token.accountId] : undefined;
      return account ? { email: account.email, groups: account.groups } : undefined;
    },
    // A refresh token for every code flow of a client allowed the grant, `offline_access` asked for or not.
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },  // open: no initial access token
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No `resource` at the authorization endpoint: the first configured resource. At the token endpoint,
        // with several granted and none named, `oneOf` is returned as it is and the request fails.
        async defaultResource(ctx, client, oneOf) {
          return oneOf ?? resources.keys().next().value;
        },
        // A code or refresh token granted for a single resource yields its token without `resource` named.
        async useGrantedResource() {
          return true;
        },
        async getResourceServerInfo(ctx, indicator) {
          const resource = resources.get(indicator);
          if (!resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return {
            scope: resource.scope,
            accessTokenTTL: ttl,
            accessTokenFormat: resource.format,
            ...(resource.format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
          };
        },
      },
    },
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Interaction: 3600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
  });
}

// Requests go to the current provider; rotating keys builds another over the same storage (see `adapter`),
// so sessions, grants, tokens and registered clients stay.
let handler;
const server = createServer((req, res) => handler(req, res));
server.listen(config.port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  handler = build(issuer).callback();
  say({ issuer, kids: keys.map((key) => key.kid) });

  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    const command = JSON.parse(line);
    try {
      if (command.command === 'rotate_keys') {
        keys = [newKey(), ...(command.keep_old ? keys : [])];
        handler = build(issuer).callback();
        say({ kids: keys.map((key) => key.kid) });
      } else if (command.command === 'add_resource') {
        resources.set(command.url, { format: command.format, scope: command.scope });
        handler = build(issuer).callback();  // its scopes may be new
        say({ resources: [...resources.keys()] });
      } else {
        say({ error: `unknown command ${command.command}` });
      }
    } catch (err) {
      say({ error: String(err) });
    }
  });
  commands.on('close', () => process.exit(0));
});
