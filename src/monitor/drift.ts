import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import type { ServiceInspector } from '../pipeline/ports.ts';
import type { RunStore } from '../store/run-store.ts';

export interface DriftEntry {
  service: string;
  /** What the deployer last deployed there. */
  recorded: string;
  /** What the service runs now (null: the service is gone). */
  actual: string | null;
  detectedAt: string;
}

/**
 * Compares each service's running spec with the last recorded deployment, on start-up
 * and every `driftInterval`: someone ran `docker service update` by hand, or removed
 * the service. Drift is reported (API, UI, log), never silently overwritten; the next
 * deploy's log names what it replaces. Pipelines with a run in progress are skipped,
 * since their services are legitimately changing.
 */
export class DriftWatcher {
  readonly #config: Config;
  readonly #store: RunStore;
  readonly #inspector: ServiceInspector;
  readonly #log: Logger;
  readonly #drift = new Map<string, DriftEntry[]>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(opts: { config: Config; store: RunStore; inspector: ServiceInspector; log: Logger }) {
    this.#config = opts.config;
    this.#store = opts.store;
    this.#inspector = opts.inspector;
    this.#log = opts.log;
  }

  start(): void {
    if (this.#config.driftIntervalMs <= 0) return;
    const tick = () => {
      this.#running ??= this.check()
        .catch((err: unknown) => this.#log.warn({ err }, 'drift check failed'))
        .finally(() => {
          this.#running = undefined;
        });
    };
    tick();
    this.#timer = setInterval(tick, this.#config.driftIntervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running;
  }

  /** Drift of one pipeline, or null when every service runs what was recorded. */
  driftOf(pipeline: string): DriftEntry[] | null {
    const entries = this.#drift.get(pipeline);
    return entries && entries.length > 0 ? entries : null;
  }

  async check(): Promise<void> {
    for (const p of this.#config.pipelines) {
      if (this.#store.activeRuns(p.name).length > 0) continue;
      const previous = this.#drift.get(p.name) ?? [];
      const entries: DriftEntry[] = [];
      for (const d of this.#store.currentDeployments(p.name)) {
        const target = p.targets.find((t) => t.service === d.service);
        if (!target) continue;
        let actual: string | null;
        try {
          actual = await this.#inspector.currentImage(target.docker, d.service);
        } catch (err) {
          this.#log.warn({ pipeline: p.name, service: d.service, err }, 'drift check failed');
          continue;
        }
        if (actual === d.image) continue;
        const known = previous.find((e) => e.service === d.service && e.actual === actual);
        entries.push(known ?? { service: d.service, recorded: d.image, actual, detectedAt: new Date().toISOString() });
        if (!known) this.#log.warn({ pipeline: p.name, service: d.service, recorded: d.image, actual }, 'drift: service changed outside the deployer');
      }
      this.#drift.set(p.name, entries);
    }
  }
}
