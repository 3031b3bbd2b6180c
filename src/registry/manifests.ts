import type { RegistryConfig } from '../config/types.ts';
import { errorMessage } from '../lib/errors.ts';
import type { ManifestCheckPort, ManifestRef, ManifestState } from '../pipeline/rollback-targets.ts';

type Fetch = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** Every manifest kind a pushed image can be stored as; a registry answers 404 for kinds not accepted. */
const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const REQUEST_TIMEOUT_MS = 10_000;

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 9110 §11.6.1): `Bearer realm="https://…/token",
 * service="registry.example",scope="repository:team/site:pull"`. Quoted values may hold
 * commas, so this is a small tokenizer, not a split. Only the first challenge is read
 * (registries send one).
 */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?\s*/gy;
  const rest = m[2] ?? '';
  re.lastIndex = 0;
  for (let p = re.exec(rest); p; p = re.exec(rest)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
    if (re.lastIndex >= rest.length) break;
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

/**
 * Asks registries whether a manifest still exists (`HEAD /v2/<repo>/manifests/<digest>`)
 * with the configured credentials, answering whatever auth the registry demands: basic
 * (htpasswd registries) or a bearer token from the realm its challenge names (Docker
 * Hub, GHCR, GitLab, Harbor, distribution with token auth). Credentials are sent only to
 * the registry they are configured for and to the token realm it names.
 */
export class RegistryManifests implements ManifestCheckPort {
  readonly #registries: RegistryConfig[];
  readonly #fetch: Fetch;
  /** Bearer tokens by registry + scope, until shortly before they expire. */
  readonly #tokens = new Map<string, { token: string; until: number }>();

  constructor(registries: RegistryConfig[], opts: { fetch?: Fetch } = {}) {
    this.#registries = registries;
    this.#fetch = opts.fetch ?? fetch;
  }

  async check(ref: ManifestRef): Promise<ManifestState> {
    const url = `${baseUrl(ref.registry)}/v2/${ref.repository}/manifests/${ref.digest}`;
    const name = `${ref.registry}/${ref.repository}@${ref.digest}`;
    const scopeKey = `${ref.registry}|repository:${ref.repository}:pull`;
    try {
      const cached = this.#tokens.get(scopeKey);
      let res = await this.#head(url, cached && cached.until > Date.now() ? `Bearer ${cached.token}` : undefined);
      if (res.status === 401) {
        const challenge = parseChallenge(res.headers.get('www-authenticate') ?? '');
        const authorization = await this.#answer(challenge, ref, scopeKey);
        if (typeof authorization !== 'string') return authorization;
        res = await this.#head(url, authorization);
      }
      if (res.status === 200) return { state: 'present' };
      if (res.status === 404) return { state: 'missing', detail: `${name} is not in the registry (404)` };
      if (res.status === 401 || res.status === 403) return { state: 'unknown', detail: `the registry refused the configured credentials for ${ref.registry}/${ref.repository} (${res.status})` };
      return { state: 'unknown', detail: `the registry answered ${res.status} for ${name}` };
    } catch (err) {
      return { state: 'unknown', detail: `could not reach ${ref.registry}: ${describe(err)}` };
    }
  }

  async #head(url: string, authorization: string | undefined): Promise<Response> {
    const res = await this.#fetch(url, {
      method: 'HEAD',
      headers: { accept: ACCEPT, ...(authorization ? { authorization } : {}) },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    await res.body?.cancel();
    return res;
  }

  /** The Authorization header a 401 challenge asks for, or the reason none can be given. */
  async #answer(challenge: Challenge | undefined, ref: ManifestRef, scopeKey: string): Promise<string | ManifestState> {
    const creds = this.#registries.find((r) => r.host === ref.registry);
    const basic = creds?.username && creds.password ? `Basic ${Buffer.from(`${creds.username}:${creds.password.reveal()}`).toString('base64')}` : undefined;
    if (challenge?.scheme === 'basic') {
      return basic ?? { state: 'unknown', detail: `${ref.registry} wants credentials and none are configured (registries[].username/password)` };
    }
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      let realm: URL;
      try {
        realm = new URL(challenge.params.realm);
      } catch {
        return { state: 'unknown', detail: `${ref.registry} named an invalid token realm` };
      }
      if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
      realm.searchParams.set('scope', `repository:${ref.repository}:pull`);
      // Anonymous tokens are the norm for public images; credentials when configured.
      const res = await this.#fetch(realm, { headers: basic ? { authorization: basic } : {}, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      if (!res.ok) {
        await res.body?.cancel();
        return { state: 'unknown', detail: `the token service of ${ref.registry} answered ${res.status}${res.status === 401 ? ' (credentials refused)' : ''}` };
      }
      const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string; expires_in?: number };
      const token = body.token ?? body.access_token;
      if (!token) return { state: 'unknown', detail: `the token service of ${ref.registry} gave no token` };
      // The spec's default lifetime is 60 s; renew a little early.
      const lifetime = Math.max(10, Number(body.expires_in ?? 60)) * 1000;
      this.#tokens.set(scopeKey, { token, until: Date.now() + lifetime - 5_000 });
      return `Bearer ${token}`;
    }
    return { state: 'unknown', detail: `${ref.registry} asked for authentication the deployer does not speak (${challenge?.scheme ?? 'no challenge'})` };
  }
}

/**
 * Where a registry's API is. Docker Hub's is not at its name; a registry on this
 * machine speaks plain HTTP (as dockerd assumes for 127.0.0.0/8), any other HTTPS.
 */
export function baseUrl(registry: string): string {
  if (registry === 'docker.io' || registry === 'index.docker.io') return 'https://registry-1.docker.io';
  const host = registry.replace(/:\d+$/, '');
  const local = host === 'localhost' || host.startsWith('127.') || host === '[::1]';
  return `${local ? 'http' : 'https'}://${registry}`;
}

function describe(err: unknown): string {
  const e = err as { name?: string; cause?: { code?: string } };
  if (e?.name === 'TimeoutError') return `no answer within ${REQUEST_TIMEOUT_MS / 1000}s`;
  return e?.cause?.code ?? errorMessage(err);
}
