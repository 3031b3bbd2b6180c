import * as oidc from 'openid-client';
import type { GithubSignIn, OidcSignIn } from '../../config/auth.ts';
import { DeployerError } from '../../lib/errors.ts';

/** What a provider says about the person who signed in. */
export interface Identity {
  provider: 'github' | 'oidc';
  /** Shown as the actor (GitHub login; OIDC e-mail, else preferred_username, else subject). */
  login: string;
  /** Identifiers auth.users may name. */
  keys: string[];
}

/** The parts of a sign-in to keep until the provider sends the browser back. */
export interface PendingSignIn {
  state: string;
  nonce: string;
  verifier: string;
}

export interface SignInProvider {
  readonly id: 'github' | 'oidc';
  /** A label for the button. */
  readonly label: string;
  /** Where to send the browser, and what to keep (in a signed cookie) until it returns. */
  start(redirectUri: string): Promise<{ url: string; pending: PendingSignIn }>;
  /** Exchanges the code in `callbackUrl`; throws DeployerError('invalid_input' | 'not_found', …) with a message for the person. */
  finish(callbackUrl: URL, pending: PendingSignIn): Promise<Identity>;
}

/** http:// endpoints are allowed only because the operator configured them so (e.g. an IdP on localhost). */
function insecureIfHttp(url: string): { execute?: ((c: oidc.Configuration) => void)[] } {
  return url.startsWith('http://') ? { execute: [oidc.allowInsecureRequests] } : {};
}

const TIMEOUT_S = 10;

/** Any OpenID Connect provider, found by discovery (cached once it succeeded). */
export class OidcProvider implements SignInProvider {
  readonly id = 'oidc' as const;
  readonly label: string;
  readonly #cfg: OidcSignIn;
  #config: Promise<oidc.Configuration> | undefined;

  constructor(cfg: OidcSignIn) {
    this.#cfg = cfg;
    this.label = new URL(cfg.issuer).host;
  }

  #configuration(): Promise<oidc.Configuration> {
    this.#config ??= oidc
      .discovery(new URL(this.#cfg.issuer), this.#cfg.clientId, { client_secret: this.#cfg.clientSecret.reveal() }, oidc.ClientSecretPost(this.#cfg.clientSecret.reveal()), { ...insecureIfHttp(this.#cfg.issuer), timeout: TIMEOUT_S })
      .catch((err: unknown) => {
        this.#config = undefined; // try discovery again next time
        throw new DeployerError('not_found', `the OpenID provider ${this.#cfg.issuer} did not answer discovery: ${(err as Error).message}`, { retryable: true, cause: err });
      });
    return this.#config;
  }

  async start(redirectUri: string): Promise<{ url: string; pending: PendingSignIn }> {
    const config = await this.#configuration();
    const pending = { state: oidc.randomState(), nonce: oidc.randomNonce(), verifier: oidc.randomPKCECodeVerifier() };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid email profile',
      state: pending.state,
      nonce: pending.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(pending.verifier),
      code_challenge_method: 'S256',
    });
    return { url: url.href, pending };
  }

  async finish(callbackUrl: URL, pending: PendingSignIn): Promise<Identity> {
    const config = await this.#configuration();
    let claims: Record<string, unknown> | undefined;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: pending.verifier, expectedState: pending.state, expectedNonce: pending.nonce, idTokenExpected: true });
      claims = tokens.claims();
      // Providers may keep scope claims (email) out of the ID token: ask UserInfo for them.
      if (claims && claims.email === undefined && config.serverMetadata().userinfo_endpoint) {
        claims = { ...(await oidc.fetchUserInfo(config, tokens.access_token, String(claims.sub))), ...claims };
      }
    } catch (err) {
      throw new DeployerError('invalid_input', `sign-in with ${this.label} failed: ${(err as Error).message}`, { cause: err });
    }
    if (!claims) throw new DeployerError('invalid_input', `sign-in with ${this.label} returned no ID token`);
    const sub = String(claims.sub);
    // An address the provider has not verified could be anyone's: it names nobody here.
    const email = typeof claims.email === 'string' && claims.email_verified === true ? claims.email : undefined;
    const username = typeof claims.preferred_username === 'string' ? claims.preferred_username : undefined;
    return { provider: 'oidc', login: email ?? username ?? sub, keys: [sub, ...(email ? [email] : [])] };
  }
}

/**
 * GitHub's OAuth app flow (github.com/login/oauth/…, with PKCE), then `GET /user` for the
 * login and, when `allowOrgs` is set, `GET /user/orgs` (scope read:org) for membership.
 */
export class GithubProvider implements SignInProvider {
  readonly id = 'github' as const;
  readonly label = 'GitHub';
  readonly #cfg: GithubSignIn;
  readonly #config: oidc.Configuration;

  constructor(cfg: GithubSignIn) {
    this.#cfg = cfg;
    this.#config = new oidc.Configuration(
      { issuer: cfg.webUrl, authorization_endpoint: `${cfg.webUrl}/login/oauth/authorize`, token_endpoint: `${cfg.webUrl}/login/oauth/access_token` },
      cfg.clientId,
      { client_secret: cfg.clientSecret.reveal() },
      oidc.ClientSecretPost(cfg.clientSecret.reveal()),
    );
    this.#config.timeout = TIMEOUT_S;
    for (const f of insecureIfHttp(cfg.webUrl).execute ?? []) f(this.#config);
  }

  async start(redirectUri: string): Promise<{ url: string; pending: PendingSignIn }> {
    const pending = { state: oidc.randomState(), nonce: '', verifier: oidc.randomPKCECodeVerifier() };
    const url = oidc.buildAuthorizationUrl(this.#config, {
      redirect_uri: redirectUri,
      scope: this.#cfg.allowOrgs.length ? 'read:org' : '',
      state: pending.state,
      code_challenge: await oidc.calculatePKCECodeChallenge(pending.verifier),
      code_challenge_method: 'S256',
      allow_signup: 'false',
    });
    return { url: url.href, pending };
  }

  async finish(callbackUrl: URL, pending: PendingSignIn): Promise<Identity> {
    let accessToken: string;
    try {
      const tokens = await oidc.authorizationCodeGrant(this.#config, callbackUrl, { pkceCodeVerifier: pending.verifier, expectedState: pending.state });
      accessToken = tokens.access_token;
    } catch (err) {
      throw new DeployerError('invalid_input', `sign-in with GitHub failed: ${(err as Error).message}`, { cause: err });
    }
    const user = (await this.#api('/user', accessToken)) as { login?: unknown };
    if (typeof user.login !== 'string') throw new DeployerError('invalid_input', 'GitHub did not say who signed in');
    if (this.#cfg.allowOrgs.length) {
      const orgs = (await this.#api('/user/orgs?per_page=100', accessToken)) as { login?: unknown }[];
      const member = Array.isArray(orgs) && orgs.some((o) => typeof o.login === 'string' && this.#cfg.allowOrgs.includes(o.login.toLowerCase()));
      if (!member) throw new DeployerError('invalid_input', `${user.login} is not a member of ${this.#cfg.allowOrgs.join(', ')} (or has not granted this app access to that organisation)`);
    }
    return { provider: 'github', login: user.login, keys: [user.login] };
  }

  async #api(path: string, token: string): Promise<unknown> {
    const res = await fetch(`${this.#cfg.apiUrl}${path}`, {
      headers: { accept: 'application/vnd.github+json', authorization: `Bearer ${token}`, 'x-github-api-version': '2022-11-28', 'user-agent': 'deployer' },
      signal: AbortSignal.timeout(TIMEOUT_S * 1000),
    }).catch((err: unknown) => {
      throw new DeployerError('not_found', `GitHub API ${path.split('?')[0]} did not answer: ${(err as Error).message}`, { retryable: true, cause: err });
    });
    if (!res.ok) throw new DeployerError('invalid_input', `GitHub API ${path.split('?')[0]} answered ${res.status}`);
    return res.json();
  }
}
