// A token service as Docker's registry token authentication specifies it
// (distribution's docs/spec/auth/token.md and jwt.md): GET <realm>?service=…&scope=…
// with optional basic credentials → {"token", "access_token", "expires_in", "issued_at"},
// a JWT signed by a key whose certificate the registry trusts (rootcertbundle). The
// real registry (distribution 2.8) then verifies every token it is shown, so a client
// that gets the flow wrong fails against it. Requests are validated and recorded.
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { baseEnv, run } from './exec.ts';

export interface TokenRequest {
  service: string | null;
  scopes: string[];
  /** The user whose basic credentials came with it; null when anonymous. */
  user: string | null;
  /** What was answered. */
  status: number;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** PEM file the registry trusts (`auth.token.rootcertbundle`). */
  certFile: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** Starts the service with one account; writes its key and certificate into `dir`. */
export async function startTokenServer(dir: string, account: { username: string; password: string }): Promise<TokenServer> {
  const keyFile = join(dir, 'token-key.pem');
  const certFile = join(dir, 'token-cert.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=deployer-test-token'], { env: baseEnv() });
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const service = 'deployer-test-registry';
  const issuer = 'deployer-test-issuer';
  const requests: TokenRequest[] = [];

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const answer = (status: number, body: unknown, user: string | null) => {
      requests.push({ service: url.searchParams.get('service'), scopes: url.searchParams.getAll('scope'), user, status });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET' || url.pathname !== '/token') return answer(404, { error: 'not found' }, null);
    if (url.searchParams.get('service') !== service) return answer(400, { error: `unknown service ${url.searchParams.get('service')}` }, null);
    const auth = req.headers.authorization;
    let user: string | null = null;
    if (auth) {
      const [scheme, value] = auth.split(' ');
      const [u, ...p] = Buffer.from(value ?? '', 'base64').toString().split(':');
      if (scheme !== 'Basic' || u !== account.username || p.join(':') !== account.password) return answer(401, { errors: [{ code: 'UNAUTHORIZED' }] }, u ?? null);
      user = u;
    }
    // This registry grants nothing to anonymous clients (a private registry).
    if (!user) return answer(401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, null);
    const access = url.searchParams.getAll('scope').flatMap((scope) => {
      // "repository:team/site:pull,push"; the name may itself hold ":" (a port) only in
      // the registry type's own grammar, never here.
      const m = /^(repository|registry):([^:]+(?::[^:]+)?):([\w,*]+)$/.exec(scope);
      return m ? [{ type: m[1], name: m[2], actions: m[3]!.split(',') }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub: user, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${b64url(signature)}`;
    answer(200, { token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() }, user);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
