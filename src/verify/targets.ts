import { errorMessage } from '../lib/errors.ts';
import { manifestRefOf, protectedTargets, type DeploymentLike, type ManifestCheckPort, type ManifestState, type RollbackTargetChecks, type TargetState } from '../pipeline/rollback-targets.ts';

/** What the pipeline page and API show per rollback target. */
export type TargetStatus = TargetState;

export interface PipelineTargets<D extends DeploymentLike = DeploymentLike> {
  pipeline: string;
  /** The pipeline's deployments (any order); the newest `protect` distinct ones are watched. */
  deployments: D[];
  protect: number;
}

/**
 * Watches the manifests of every pipeline's rollback targets in the registry: at start,
 * then every `intervalMs`. Results live in memory in the process that serves the pages
 * (a restart checks again at once). A rollback does not trust this cache: it asks the
 * registry again (`checkNow`) before touching the service.
 */
export class RollbackTargetWatcher implements RollbackTargetChecks {
  readonly #check: ManifestCheckPort;
  readonly #list: () => PipelineTargets[] | Promise<PipelineTargets[]>;
  readonly #intervalMs: number;
  readonly #log: (msg: string) => void;
  readonly #status = new Map<string, TargetStatus>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(opts: { check: ManifestCheckPort; list: () => PipelineTargets[] | Promise<PipelineTargets[]>; intervalMs: number; log?: (msg: string) => void }) {
    this.#check = opts.check;
    this.#list = opts.list;
    this.#intervalMs = opts.intervalMs;
    this.#log = opts.log ?? (() => undefined);
  }

  start(): void {
    if (this.#intervalMs <= 0 || this.#timer) return;
    const tick = () => void this.checkAll().catch((err) => this.#log(`rollback target check failed: ${errorMessage(err)}`));
    tick();
    this.#timer = setInterval(tick, this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One pass over every pipeline's protected targets (never two at once). */
  checkAll(): Promise<void> {
    this.#running ??= (async () => {
      try {
        for (const p of await this.#list()) {
          for (const d of protectedTargets(p.deployments, p.protect)) await this.checkNow(d.image);
        }
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /** Asks the registry now, records and returns the answer. */
  async checkNow(image: string): Promise<TargetStatus> {
    const ref = manifestRefOf(image);
    const state: ManifestState = ref ? await this.#check.check(ref) : { state: 'unknown', detail: `${image} is not pinned by digest` };
    const status: TargetStatus = { ...state, image, checkedAt: new Date().toISOString() };
    const before = this.#status.get(image);
    if (status.state === 'missing' && before?.state !== 'missing') this.#log(`rollback target gone: ${status.detail}`);
    this.#status.set(image, status);
    return status;
  }

  /** The last answer for `image`, if it was checked. */
  statusOf(image: string): TargetStatus | undefined {
    return this.#status.get(image);
  }
}
