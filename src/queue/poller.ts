import type { Logger } from 'pino';
import type { Config, PipelineConfig } from '../config/types.ts';
import { Refused } from '../lib/errors.ts';
import type { BranchHeadPort } from '../pipeline/ports.ts';
import type { RunStore } from '../store/run-store.ts';
import type { Scheduler } from './scheduler.ts';

export type RefreshResult = { kind: 'queued'; run: string; commit: string } | { kind: 'up_to_date'; commit: string; reason: string };

/**
 * The safety net for missed webhooks: reads each branch head with `git ls-remote` on
 * start-up and every `pipelines[].poll`, and queues a run (trigger `poll`) when the
 * head is a commit this pipeline has never run. A commit that already ran (even if it
 * failed, or was cancelled) is not retried: only a new push, a rebuild or a refresh does that.
 */
export class BranchPoller {
  readonly #config: Config;
  readonly #heads: BranchHeadPort;
  readonly #store: RunStore;
  readonly #scheduler: Scheduler;
  readonly #log: Logger;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #inFlight = new Map<string, Promise<RefreshResult>>();

  constructor(opts: { config: Config; heads: BranchHeadPort; store: RunStore; scheduler: Scheduler; log: Logger }) {
    this.#config = opts.config;
    this.#heads = opts.heads;
    this.#store = opts.store;
    this.#scheduler = opts.scheduler;
    this.#log = opts.log;
  }

  start(): void {
    for (const p of this.#config.pipelines) {
      if (p.pollMs <= 0) continue;
      const tick = () =>
        void this.refresh(p.name, 'poll').catch((err: unknown) => this.#log.warn({ pipeline: p.name, err }, 'branch poll failed'));
      const first = setTimeout(tick, 2_000);
      first.unref();
      const every = setInterval(tick, p.pollMs);
      every.unref();
      this.#timers.push(first, every);
    }
  }

  stop(): void {
    for (const t of this.#timers) clearTimeout(t);
  }

  /** Checks one pipeline now ("Check now", by `by`). Concurrent calls share one check. */
  refresh(name: string, trigger: 'poll' | 'refresh', by = trigger === 'poll' ? 'poller' : 'admin'): Promise<RefreshResult> {
    const running = this.#inFlight.get(name);
    if (running) return running;
    const pipeline = this.#config.pipelines.find((p) => p.name === name);
    if (!pipeline) return Promise.reject(new Refused(404, `no pipeline ${name}`));
    const p = this.#check(pipeline, trigger, by).finally(() => this.#inFlight.delete(name));
    this.#inFlight.set(name, p);
    return p;
  }

  async #check(pipeline: PipelineConfig, trigger: 'poll' | 'refresh', by: string): Promise<RefreshResult> {
    const head = await this.#heads.branchHead(pipeline, AbortSignal.timeout(60_000));
    const statuses = this.#store.statusesForCommit(pipeline.name, head).filter((s) => s !== 'superseded');
    if (statuses.length > 0) return { kind: 'up_to_date', commit: head, reason: `commit already ${statuses.includes('queued') || statuses.includes('running') ? 'queued' : 'ran'}` };
    const deployed = this.#store.currentDeployment(pipeline.name);
    if (deployed?.commit === head) return { kind: 'up_to_date', commit: head, reason: 'commit already deployed' };
    const [run] = await this.#scheduler.submit([{ pipeline: pipeline.name, trigger: 'poll', commit: head, requestedBy: by }]);
    this.#log.info({ pipeline: pipeline.name, commit: head, run: run!.id, trigger }, 'branch head has no run: queued one');
    return { kind: 'queued', run: run!.id, commit: head };
  }
}
