import type { Logger } from 'pino';
import type { Config, PipelineConfig } from '../../config/types.ts';
import type { GitHubStepRow, NewStep, ReportStore } from '../../store/report-store.ts';
import type { RunView } from '../../store/run-store.ts';
import { DeliveryError } from '../delivery.ts';
import type { GitHubApi, OnAttempt } from './octokit.ts';
import { checkRunPlan, commitStatusPlan, deploymentStatuses, isFinalDeploymentState, replacedDescription, statusesAfter, type DeploymentState, type PlanContext } from './plan.ts';

const WARNING_SOURCE = 'github';

/**
 * Tells GitHub about runs: a deployment per run with its statuses in order, and a
 * check run (App) or commit status (token) per pipeline on the commit.
 *
 * `observe` runs on the store owner after a change to a run was applied: it compares
 * what GitHub should show (plan.ts, pure) with what was already queued and appends the
 * difference to the run's outbox (a store table), then asks the report queue for a
 * job. `sync` is that job: it posts the run's pending steps in order, records each
 * attempt, stops at the first retryable failure (the queue retries with backoff, so
 * statuses never overtake each other) and marks a refused one (4xx) with a warning on
 * the pipeline. A deploy never waits for any of this.
 */
export class GitHubReporter {
  readonly #config: Config;
  readonly #reports: ReportStore;
  readonly #api: GitHubApi;
  readonly #enqueue: (runId: string) => Promise<void>;
  readonly #log: Logger;
  /** One sync per run at a time, so steps go out in order (the queue may hold two jobs of a run). */
  readonly #syncing = new Map<string, Promise<void>>();

  constructor(opts: { config: Config; reports: ReportStore; api: GitHubApi; enqueue: (runId: string) => Promise<void>; log: Logger }) {
    this.#config = opts.config;
    this.#reports = opts.reports;
    this.#api = opts.api;
    this.#enqueue = opts.enqueue;
    this.#log = opts.log;
  }

  observe(run: RunView): void {
    const pipeline = this.#config.pipelines.find((p) => p.name === run.pipeline);
    if (!pipeline || pipeline.report.length === 0 || !run.commit) return;
    const existing = this.#reports.report(run.id);
    const started = existing !== undefined;
    const ctx = this.#context(run, pipeline);
    const steps: NewStep[] = [];
    const state: { deploymentState?: string; checkKey?: string } = {};
    const others: { runId: string; pipeline: string; step: NewStep; deploymentState: string }[] = [];

    if (pipeline.report.includes('deployments') && !isFinalDeploymentState((existing?.deploymentState ?? null) as DeploymentState | null)) {
      const desired = deploymentStatuses(run, started, ctx);
      if (desired.length > 0 && !existing?.deploymentState) {
        steps.push({
          kind: 'deployment',
          state: 'created',
          body: {
            ref: run.commit,
            environment: pipeline.environment,
            description: `${run.pipeline}: run ${run.id}`,
            // Deploy exactly this commit: no merge of the default branch, no wait for other checks.
            auto_merge: false,
            required_contexts: [],
            payload: { pipeline: run.pipeline, run: run.id, trigger: run.trigger },
            transient_environment: false,
          },
        });
      }
      const next = statusesAfter((existing?.deploymentState ?? null) as DeploymentState | null, desired);
      for (const s of next) {
        steps.push({
          kind: 'deployment_status',
          state: s.state,
          body: {
            state: s.state,
            description: s.description,
            log_url: ctx.runUrl,
            ...(s.state === 'success' && pipeline.publicUrl ? { environment_url: pipeline.publicUrl } : {}),
            // The deployment this one replaces is made inactive explicitly (below), also
            // in production environments, where GitHub's auto_inactive does nothing.
            auto_inactive: false,
          },
        });
      }
      if (next.length > 0) state.deploymentState = next[next.length - 1]!.state;
      if (next.some((s) => s.state === 'success')) {
        const previous = this.#reports.previousLive(pipeline.name, pipeline.environment, run.id);
        if (previous) {
          others.push({
            runId: previous.runId,
            pipeline: previous.pipeline,
            deploymentState: 'inactive',
            step: { kind: 'deployment_status', state: 'inactive', body: { state: 'inactive', description: replacedDescription(run), log_url: this.#runUrl(previous.runId), auto_inactive: false } },
          });
        }
      }
    }

    if (pipeline.report.includes('checks')) {
      if (this.#api.mode === 'app') {
        const plan = checkRunPlan(run, started, ctx);
        const key = plan && JSON.stringify(plan);
        if (plan && key !== existing?.checkKey) {
          const completed = plan.status === 'completed';
          steps.push({
            kind: 'check_run',
            state: plan.conclusion ?? plan.status,
            body: {
              name: plan.name,
              head_sha: run.commit,
              details_url: ctx.runUrl,
              external_id: run.id,
              status: plan.status,
              ...(run.startedAt ? { started_at: isoSeconds(run.startedAt) } : {}),
              ...(completed ? { conclusion: plan.conclusion, completed_at: isoSeconds(run.finishedAt ?? new Date().toISOString()) } : {}),
              output: { title: plan.title, summary: plan.summary },
            },
          });
          state.checkKey = key;
        }
      } else {
        const plan = commitStatusPlan(run, started);
        const key = plan && JSON.stringify(plan);
        if (plan && key !== existing?.checkKey) {
          steps.push({ kind: 'commit_status', state: plan.state, body: { state: plan.state, target_url: ctx.runUrl, description: plan.description, context: plan.context } });
          state.checkKey = key;
        }
      }
    }

    if (steps.length === 0 && others.length === 0) return;
    this.#reports.queue({ runId: run.id, pipeline: pipeline.name, repo: pipeline.repo, commit: run.commit, environment: pipeline.environment }, steps, state, others);
    for (const id of [run.id, ...others.map((o) => o.runId)]) this.#queueJob(id);
  }

  /** Queues jobs again for runs with steps still pending (their job was lost with Redis). */
  requeuePending(): void {
    for (const id of this.#reports.runsWithPendingSteps()) this.#queueJob(id);
  }

  /** The report queue's job for one run. Throws to be retried later (with backoff). */
  async sync(runId: string, lastAttempt: boolean): Promise<void> {
    const before = this.#syncing.get(runId);
    const mine = (async () => {
      await before?.catch(() => undefined);
      await this.#sync(runId, lastAttempt);
    })();
    this.#syncing.set(runId, mine);
    try {
      await mine;
    } finally {
      if (this.#syncing.get(runId) === mine) this.#syncing.delete(runId);
    }
  }

  async #sync(runId: string, lastAttempt: boolean): Promise<void> {
    const steps = this.#reports.pendingSteps(runId);
    for (const [i, step] of steps.entries()) {
      // Only the newest content of a check run / commit status matters: older pending
      // updates (piled up while GitHub was down) are skipped, not sent.
      if ((step.kind === 'check_run' || step.kind === 'commit_status') && steps.slice(i + 1).some((s) => s.kind === step.kind)) {
        this.#reports.markStep(step.seq, 'skipped', 'replaced by a newer update');
        continue;
      }
      const report = this.#reports.report(runId);
      if (!report) return;
      // Every HTTP request is recorded, Octokit's own retries included.
      const onAttempt: OnAttempt = (a) => this.#reports.recordStepAttempt(step.seq, a);
      try {
        await this.#post(step, report.repo, report.commit, runId, report.deploymentId, report.checkRunId, onAttempt);
        this.#reports.markStep(step.seq, 'sent');
        this.#reports.clearWarning(step.pipeline, WARNING_SOURCE);
      } catch (err) {
        const e = err instanceof DeliveryError ? err : new DeliveryError((err as Error).message, { status: null, retryable: true });
        const log = { run: runId, pipeline: step.pipeline, step: step.kind, state: step.state, status: e.status, err: { message: e.message } };
        if (!e.retryable) {
          this.#reports.markStep(step.seq, 'refused', e.message);
          // A status whose deployment was refused is a consequence: the warning keeps the cause.
          if (e.status !== null) this.#reports.setWarning(step.pipeline, WARNING_SOURCE, `GitHub refused the ${label(step)} of run ${runId}: ${e.message}`);
          this.#log.warn(log, 'GitHub refused a report: not retried');
          continue;
        }
        if (lastAttempt) {
          this.#reports.markStep(step.seq, 'failed', e.message);
          for (const rest of steps.slice(i + 1)) this.#reports.markStep(rest.seq, 'failed', 'an earlier report of the run was not delivered');
          this.#reports.setWarning(step.pipeline, WARNING_SOURCE, `Gave up reporting run ${runId} to GitHub: ${e.message}`);
          this.#log.warn(log, 'GitHub report not delivered: gave up retrying');
          return;
        }
        this.#reports.markStep(step.seq, 'pending', e.message);
        this.#log.info(log, 'GitHub report failed; retrying later');
        throw e;
      }
    }
  }

  /** One API call; throws DeliveryError. Refuses steps whose deployment GitHub never created. */
  async #post(step: GitHubStepRow, repo: string, commit: string, runId: string, deploymentId: number | null, checkRunId: number | null, onAttempt: OnAttempt): Promise<void> {
    switch (step.kind) {
      case 'deployment': {
        if (deploymentId !== null) return;
        const res = await this.#api.createDeployment(repo, step.body, onAttempt);
        this.#reports.setDeploymentId(runId, res.id);
        return;
      }
      case 'deployment_status':
        if (deploymentId === null) throw new DeliveryError('no GitHub deployment to update (creating it failed)', { status: null, retryable: false });
        await this.#api.createDeploymentStatus(repo, deploymentId, step.body, onAttempt);
        return;
      case 'check_run': {
        if (checkRunId !== null) {
          // A check run's commit and id are fixed once created.
          const { head_sha: _sha, ...update } = step.body;
          await this.#api.updateCheckRun(repo, checkRunId, update, onAttempt);
          return;
        }
        const res = await this.#api.createCheckRun(repo, step.body, onAttempt);
        this.#reports.setCheckRunId(runId, res.id);
        return;
      }
      case 'commit_status':
        await this.#api.createCommitStatus(repo, commit, step.body, onAttempt);
        return;
    }
  }

  #queueJob(runId: string): void {
    // Not queued now (Redis down): the steps stay pending and the sweep queues them again.
    this.#enqueue(runId).catch((err) => this.#log.warn({ run: runId, err: { message: (err as Error).message } }, 'could not queue a GitHub report; will retry'));
  }

  #context(run: RunView, pipeline: PipelineConfig): PlanContext {
    return { runUrl: this.#runUrl(run.id), services: pipeline.services };
  }

  #runUrl(runId: string): string {
    return `${this.#config.publicUrl}/runs/${runId}`;
  }
}

function label(step: GitHubStepRow): string {
  switch (step.kind) {
    case 'deployment':
      return 'deployment';
    case 'deployment_status':
      return `deployment status "${step.state}"`;
    case 'check_run':
      return 'check run';
    case 'commit_status':
      return 'commit status';
  }
}

/** GitHub's timestamps: ISO 8601 without fractions (YYYY-MM-DDTHH:MM:SSZ). */
function isoSeconds(iso: string): string {
  return new Date(iso).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
