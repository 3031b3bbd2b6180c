import type { Logger } from 'pino';
import type { AuditResult, AuditStore } from '../../store/audit-store.ts';

/** What an audit entry needs of a request. */
export interface AuditSource {
  actor: { name: string; role: string | null; via: string } | undefined;
  ip: string;
}

/** Remembers at most this many (token, address) pairs before starting afresh. */
const MAX_REMEMBERED = 10_000;

/**
 * Writes the audit trail. Writes and sign-ins are recorded every time; token use and
 * refused tokens are recorded once per token (or address) per `quietMs`, so a script
 * polling the API, or someone guessing tokens, cannot flood the trail.
 */
export class Auditor {
  readonly #store: AuditStore;
  readonly #log: Logger;
  readonly #quietMs: number;
  readonly #lastSeen = new Map<string, number>();

  constructor(store: AuditStore, log: Logger, quietMs = 3_600_000) {
    this.#store = store;
    this.#log = log;
    this.#quietMs = quietMs;
  }

  record(src: AuditSource, action: string, target: string | null, result: AuditResult, detail: string | null = null): void {
    const a = src.actor;
    try {
      this.#store.record({ actor: a?.name ?? 'anonymous', role: a?.role ?? null, via: a?.via ?? 'anonymous', action, target, result, detail, address: src.ip });
    } catch (err) {
      // The action itself already happened (or was refused): say loudly that its record is missing.
      this.#log.error({ err: { message: (err as Error).message }, action, target, actor: a?.name }, 'could not write the audit trail');
    }
  }

  /** A request authenticated by a bearer token: recorded on first use from an address, then hourly. */
  tokenUsed(src: AuditSource, method: string, path: string): void {
    if (this.#quiet(`use\u0000${src.actor?.name}\u0000${src.ip}`)) return;
    this.record(src, 'token-use', null, 'ok', `${method} ${path}`);
  }

  /** A bearer token that matches nothing: recorded once per address per quiet period (each is logged). */
  tokenRefused(ip: string, method: string, path: string): void {
    this.#log.info({ ip, method, path }, 'refused an unknown bearer token');
    if (this.#quiet(`bad\u0000${ip}`)) return;
    this.record({ actor: undefined, ip }, 'sign-in', null, 'refused', `unknown bearer token (${method} ${path}); further ones from this address within the hour are only logged`);
  }

  #quiet(key: string): boolean {
    const now = Date.now();
    const last = this.#lastSeen.get(key);
    if (last !== undefined && now - last < this.#quietMs) return true;
    if (this.#lastSeen.size >= MAX_REMEMBERED) this.#lastSeen.clear();
    this.#lastSeen.set(key, now);
    return false;
  }
}
