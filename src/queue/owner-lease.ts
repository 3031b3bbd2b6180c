import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** How long a lease lives without renewal: the longest a dead owner blocks its successor. */
export const LEASE_TTL_MS = 10_000;
/** Renewal (and, for a standby, the look for a free lease) this often. */
const RENEW_MS = 2_000;
/**
 * The holder applies nothing once its last successful renewal is this old: the key may
 * be about to expire in Redis (a renewal failing, the event loop stalled), and a
 * successor may take it. The margin covers the renewal's round trip.
 */
const TRUSTED_MS = LEASE_TTL_MS - 3_000;

// Renew or give up only a lease that is still ours: compare and act in one step.
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export interface OwnerDuties {
  /** Called once the lease is taken: start what only one process per store may run. */
  start(): void;
  /** Called when the lease is lost or given back: stop it (resolves once stopped). */
  stop(): Promise<void>;
}

/**
 * Which of the processes sharing one store owns it: applies worker events, reconciles,
 * applies retention, polls branches, watches drift. Usually there is one process; during
 * a start-first update of the deployer's own service (or `docker service update` of it)
 * the new task runs next to the old one, both answering HTTP and accepting webhooks
 * (SQLite serialises their writes), while only the lease holder does the owner's work.
 * The old task gives the lease back on SIGTERM; the new one takes it within RENEW_MS.
 *
 * The lease is a Redis key with a TTL, renewed while held. The holder applies events
 * only while its last renewal is recent enough that the key cannot have expired
 * (`trusted()`), so two processes never apply at once, even when renewals fail or the
 * event loop stalls; its other duties (timers that reconcile, poll, prune) go on. If the
 * key expired and nobody took it, the next renewal takes it again; if another process
 * took it, this one stops its duties and stands by.
 */
export class OwnerLease {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #duties: OwnerDuties;
  readonly #log: Logger;
  readonly #token = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  #held = false;
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> | undefined;
  #closed = false;
  #since: number | undefined;
  /** When the lease was last taken or renewed (local clock, after Redis answered). */
  #renewedAt = 0;

  constructor(opts: { redis: Redis; prefix: string; storeId: string; duties: OwnerDuties; log: Logger }) {
    this.#redis = opts.redis;
    this.#key = `${opts.prefix}:owner:${opts.storeId}`;
    this.#duties = opts.duties;
    this.#log = opts.log;
  }

  /** True while this process owns the store. */
  get held(): boolean {
    return this.#held;
  }

  /**
   * Whether the owner's work may be done right now: held, and renewed recently enough
   * that no other process can hold it yet. Asked right before each write that must
   * have one author (the event consumer, before applying a batch).
   */
  trusted(): boolean {
    return this.#held && Date.now() - this.#renewedAt < TRUSTED_MS;
  }

  /** This process's name in the lease (logs, /healthz). */
  get token(): string {
    return this.#token;
  }

  /** Tries at once (resolves after that first try), then keeps trying or renewing. */
  async start(): Promise<void> {
    await this.#step();
    this.#timer = setInterval(() => {
      this.#tick ??= this.#step().finally(() => {
        this.#tick = undefined;
      });
    }, RENEW_MS);
    this.#timer.unref();
  }

  /** Who holds the lease now (null: nobody), as Redis says. */
  async holder(): Promise<string | null> {
    return this.#redis.get(this.#key);
  }

  /** Stops the duties and gives the lease back, so a successor takes over at once. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#tick;
    if (!this.#held) return;
    this.#held = false;
    await this.#duties.stop();
    await this.#redis.eval(RELEASE, 1, this.#key, this.#token).catch((err: unknown) => this.#log.warn({ err }, 'could not give the store lease back; it expires by itself'));
    this.#log.info({ lease: this.#key }, 'store ownership given back');
  }

  async #step(): Promise<void> {
    if (this.#closed) return;
    try {
      if (this.#held) {
        const renewed = Number(await this.#redis.eval(RENEW, 1, this.#key, this.#token, LEASE_TTL_MS));
        if (renewed === 1) {
          this.#renewedAt = Date.now();
          return;
        }
        // Expired (Redis was away, or restarted, past the TTL) and nobody took it: take it
        // again without stopping anything. Nothing was applied meanwhile (trusted()).
        if ((await this.#redis.set(this.#key, this.#token, 'PX', LEASE_TTL_MS, 'NX')) === 'OK') {
          this.#renewedAt = Date.now();
          this.#log.warn({ lease: this.#key }, 'store lease had expired (Redis away longer than the lease); taken again');
          return;
        }
        this.#held = false;
        this.#log.error({ lease: this.#key, holder: await this.holder().catch(() => null) }, 'store ownership lost to another process (Redis was away longer than the lease); standing by');
        await this.#duties.stop();
        return;
      }
      const taken = await this.#redis.set(this.#key, this.#token, 'PX', LEASE_TTL_MS, 'NX');
      if (taken !== 'OK' || this.#closed) {
        if (taken === 'OK') await this.#redis.eval(RELEASE, 1, this.#key, this.#token);
        if (this.#since === undefined) {
          this.#since = Date.now();
          this.#log.info({ lease: this.#key, holder: await this.holder().catch(() => null) }, 'another process owns the store: serving HTTP and webhooks, standing by to take over');
        }
        return;
      }
      this.#held = true;
      this.#renewedAt = Date.now();
      this.#log.info({ lease: this.#key, waitedMs: this.#since === undefined ? 0 : Date.now() - this.#since }, 'store ownership taken');
      this.#since = undefined;
      this.#duties.start();
    } catch (err) {
      // Redis away: a holder keeps its duties (nobody else can take over meanwhile).
      this.#log.debug({ err }, 'store lease step failed');
    }
  }
}
