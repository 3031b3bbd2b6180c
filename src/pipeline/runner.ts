import { posix } from 'node:path';
import type { PipelineConfig } from '../config/types.ts';
import { DeployerError, errorMessage, oneLine } from '../lib/errors.ts';
import type { LineSink, RunReporter } from './events.ts';
import type { Checkout, RunPorts } from './ports.ts';
import type { RunStatus, StageName } from './states.ts';

export interface RunJob {
  runId: string;
  pipeline: PipelineConfig;
  /** Null means "the branch head as it is now" (rebuild). */
  commit: string | null;
  worker: string;
}

export interface RunOutcome {
  status: RunStatus;
  error?: string;
}

const now = () => new Date().toISOString();

/**
 * Executes one run: fetch → build → push → deploy, reporting every transition and
 * output line. Each stage either finishes or fails with a one-line reason; the run
 * ends in exactly one terminal state. Never throws.
 */
export async function executeRun(job: RunJob, ports: RunPorts, report: RunReporter, signal: AbortSignal): Promise<RunOutcome> {
  const { runId, pipeline } = job;
  const logTo = (stage: StageName | null): LineSink => {
    // Lines are batched by the reporter; one event per line here keeps ordering simple.
    return (line) => report.emit({ type: 'log', runId, stage, at: now(), lines: [line] });
  };
  report.emit({ type: 'run.started', runId, at: now(), worker: job.worker });

  let checkout: Checkout | undefined;
  let imageRef = '';
  let digest = '';
  const stages: [StageName, () => Promise<void>][] = [
    [
      'fetch',
      async () => {
        checkout = await ports.source.checkout({ pipeline, commit: job.commit, signal, log: logTo('fetch') });
        report.emit({ type: 'run.commit', runId, commit: checkout.commit, subject: checkout.subject, author: checkout.author });
      },
    ],
    [
      'build',
      async () => {
        const co = checkout!;
        const context = posix.normalize(pipeline.build.context).replace(/^\.\/?|\/$/g, '');
        const prefix = context === '' || context === '.' ? '' : `${context}/`;
        const files = co.files.filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length));
        if (!files.includes(pipeline.build.dockerfile)) {
          throw new DeployerError('build_failed', `${prefix}${pipeline.build.dockerfile} does not exist in commit ${co.commit.slice(0, 12)}`);
        }
        await ports.builder.build({
          contextDir: prefix ? posix.join(co.dir, context) : co.dir,
          files,
          dockerfile: pipeline.build.dockerfile,
          args: pipeline.build.args,
          target: pipeline.build.target,
          labels: {
            'org.opencontainers.image.revision': co.commit,
            'org.opencontainers.image.source': `https://github.com/${pipeline.repo}`,
            'org.opencontainers.image.ref.name': pipeline.branch,
          },
          tags: [`${pipeline.image}:${co.commit}`, `${pipeline.image}:${pipeline.tag}`],
          signal,
          log: logTo('build'),
        });
      },
    ],
    [
      'push',
      async () => {
        const co = checkout!;
        const log = logTo('push');
        const bySha = await ports.pusher.push({ repository: pipeline.image, registry: pipeline.registry, tag: co.commit, signal, log });
        const byTag = await ports.pusher.push({ repository: pipeline.image, registry: pipeline.registry, tag: pipeline.tag, signal, log });
        if (bySha.digest !== byTag.digest) {
          throw new DeployerError('push_failed', `registry reported different digests for :${co.commit} (${bySha.digest}) and :${pipeline.tag} (${byTag.digest})`);
        }
        digest = byTag.digest;
        imageRef = `${pipeline.image}:${pipeline.tag}@${digest}`;
        report.emit({ type: 'image', runId, ref: imageRef, digest });
      },
    ],
    [
      'deploy',
      async () => {
        const co = checkout!;
        const log = logTo('deploy');
        if (pipeline.services.length === 0) log('no services configured: nothing to deploy');
        for (const service of pipeline.services) {
          log(`updating service ${service} to ${imageRef}`);
          await ports.deployer.deploy({ service, image: imageRef, registry: pipeline.registry, settings: pipeline.deploy, signal, log });
          report.emit({ type: 'deployed', runId, service, image: imageRef, digest, commit: co.commit, at: now() });
        }
      },
    ],
  ];

  let outcome: RunOutcome = { status: 'succeeded' };
  try {
    for (const [name, body] of stages) {
      if (outcome.status !== 'succeeded') {
        report.emit({ type: 'stage.finished', runId, stage: name, status: 'skipped', at: now() });
        continue;
      }
      if (signal.aborted) {
        outcome = { status: 'cancelled', error: cancelReason(signal) };
        report.emit({ type: 'stage.finished', runId, stage: name, status: 'cancelled', at: now() });
        continue;
      }
      report.emit({ type: 'stage.started', runId, stage: name, at: now() });
      try {
        await body();
        report.emit({ type: 'stage.finished', runId, stage: name, status: 'succeeded', at: now() });
      } catch (err) {
        const cancelled = signal.aborted;
        const message = cancelled ? cancelReason(signal) : oneLine(errorMessage(err));
        logTo(name)(cancelled ? `cancelled: ${message}` : `error: ${errorMessage(err)}`);
        report.emit({ type: 'stage.finished', runId, stage: name, status: cancelled ? 'cancelled' : 'failed', at: now(), error: message });
        outcome = cancelled ? { status: 'cancelled', error: message } : { status: 'failed', error: `${name}: ${message}` };
      }
    }
  } finally {
    if (checkout) {
      await checkout.cleanup().catch((err) => logTo(null)(`warning: could not remove work tree: ${errorMessage(err)}`));
    }
  }
  report.emit({ type: 'run.finished', runId, status: outcome.status, at: now(), ...(outcome.error ? { error: outcome.error } : {}) });
  await report.flush();
  return outcome;
}

function cancelReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (r instanceof Error && r.name !== 'AbortError') return r.message;
  if (typeof r === 'string') return r;
  return 'cancelled';
}
