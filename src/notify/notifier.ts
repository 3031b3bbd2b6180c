import type { Logger } from 'pino';
import type { Config, NotifyEvent, NotifyTarget } from '../config/types.ts';
import type { DriftEntry } from '../monitor/drift.ts';
import { DeliveryError } from '../report/delivery.ts';
import type { NewNotification, NotificationStore } from '../store/notification-store.ts';
import type { ReportQueries } from '../store/report-queries.ts';
import type { RunView } from '../store/run-store.ts';
import { runEvents } from './events.ts';
import { slackDriftMessage, slackRunMessage, webhookDriftPayload, webhookRunPayload, type MessageContext } from './messages.ts';
import { newMessageId, sendSlack, sendWebhook } from './senders.ts';

/**
 * Chat messages and signed webhooks. `observe` (store owner, after an applied change)
 * records the notifications a run has earned, once each (receiver + run + event is
 * unique), and hands their ids to the report queue; `deliver` is that queue's job: one
 * HTTP attempt, recorded with its response code. Neither can block or fail a run.
 */
export class Notifier {
  readonly #config: Config;
  readonly #store: NotificationStore;
  readonly #queries: ReportQueries;
  readonly #enqueue: (id: string) => Promise<void>;
  readonly #log: Logger;

  constructor(opts: { config: Config; store: NotificationStore; queries: ReportQueries; enqueue: (id: string) => Promise<void>; log: Logger }) {
    this.#config = opts.config;
    this.#store = opts.store;
    this.#queries = opts.queries;
    this.#enqueue = opts.enqueue;
    this.#log = opts.log;
  }

  get enabled(): boolean {
    return this.#config.notify.length > 0;
  }

  /** `started`: the run's start was among the changes applied since the last look. */
  observe(run: RunView, started = false): void {
    if (!this.enabled) return;
    const pipeline = this.#config.pipelines.find((p) => p.name === run.pipeline);
    if (!pipeline) return;
    const previous = run.status === 'succeeded' ? this.#queries.previousOutcome(run.pipeline, run.id) : undefined;
    const events = runEvents(run, previous, started);
    if (events.length === 0) return;
    const ctx = this.#context(run, pipeline.repo, pipeline.environment);
    const at = new Date().toISOString();
    const list: NewNotification[] = [];
    for (const target of this.#targetsFor(run.pipeline)) {
      for (const event of events) {
        if (!target.on.includes(event)) continue;
        const dedupe = `${target.index}:run:${run.id}:${event}`;
        if (this.#store.exists(dedupe)) continue;
        const body = target.kind === 'slack' ? slackRunMessage(event, run, ctx) : webhookRunPayload(event, run, ctx, at);
        list.push({ id: newMessageId(), dedupe, pipeline: run.pipeline, runId: run.id, target: target.index, channel: target.kind, label: labelOf(target), event, body: JSON.stringify(body) });
      }
    }
    this.#queue(list);
  }

  /**
   * Drift on a pipeline's services, as DriftWatcher sees it now: one message per
   * receiver each time the set of drifted services (or what they run) changes.
   */
  observeDrift(pipelineName: string, entries: DriftEntry[]): void {
    if (!this.enabled || entries.length === 0) return;
    const pipeline = this.#config.pipelines.find((p) => p.name === pipelineName);
    if (!pipeline) return;
    const pipelineUrl = `${this.#config.publicUrl}/pipelines/${encodeURIComponent(pipelineName)}`;
    const at = new Date().toISOString();
    const key = entries.map((e) => `${e.service}=${e.actual ?? 'gone'}@${e.detectedAt}`).sort().join(',');
    const list: NewNotification[] = [];
    for (const target of this.#targetsFor(pipelineName)) {
      if (!target.on.includes('drift')) continue;
      const dedupe = `${target.index}:drift:${pipelineName}:${key}`;
      if (this.#store.exists(dedupe)) continue;
      const body = target.kind === 'slack' ? slackDriftMessage(pipelineName, entries, { pipelineUrl }) : webhookDriftPayload(pipelineName, pipeline.repo, entries, { pipelineUrl }, at);
      list.push({ id: newMessageId(), dedupe, pipeline: pipelineName, runId: null, target: target.index, channel: target.kind, label: labelOf(target), event: 'drift', body: JSON.stringify(body) });
    }
    this.#queue(list);
  }

  /** Queues again the notifications still pending (their job was lost with Redis). */
  requeuePending(): void {
    this.#enqueueAll(this.#store.pendingIds());
  }

  /** One delivery attempt (the report queue's job). Throws to be retried later. */
  async deliver(id: string, lastAttempt: boolean): Promise<void> {
    const n = this.#store.get(id);
    if (!n || n.status !== 'pending') return;
    const target = this.#config.notify[n.target];
    if (!target || target.kind !== n.channel) {
      this.#store.mark(id, 'failed', undefined);
      this.#log.warn({ notification: id }, 'notification receiver is no longer configured: dropped');
      return;
    }
    const started = Date.now();
    const at = new Date(started).toISOString();
    try {
      const res = target.kind === 'slack' ? await sendSlack(target, n.body) : await sendWebhook(target, n.id, n.body);
      this.#store.mark(id, 'sent', { at, status: res.status, error: null, ms: Date.now() - started });
    } catch (err) {
      const e = err instanceof DeliveryError ? err : new DeliveryError((err as Error).message, { status: null, retryable: true });
      const attempt = { at, status: e.status, error: e.message, ms: Date.now() - started };
      const log = { notification: id, pipeline: n.pipeline, event: n.event, receiver: n.label, status: e.status, err: { message: e.message } };
      if (!e.retryable) {
        this.#store.mark(id, 'refused', attempt);
        this.#log.warn(log, 'notification refused by its receiver: not retried');
        return;
      }
      if (lastAttempt) {
        this.#store.mark(id, 'failed', attempt);
        this.#log.warn(log, 'notification not delivered: gave up retrying');
        return;
      }
      this.#store.mark(id, 'pending', attempt);
      this.#log.info(log, 'notification delivery failed; retrying later');
      throw e;
    }
  }

  #targetsFor(pipeline: string): NotifyTarget[] {
    return this.#config.notify.filter((t) => !t.pipelines || t.pipelines.includes(pipeline));
  }

  #context(run: RunView, repo: string, environment: string): MessageContext {
    return {
      runUrl: `${this.#config.publicUrl}/runs/${run.id}`,
      pipelineUrl: `${this.#config.publicUrl}/pipelines/${encodeURIComponent(run.pipeline)}`,
      repo,
      commitUrl: run.commit ? `${this.#config.github.webUrl}/${repo}/commit/${run.commit}` : undefined,
      environment,
    };
  }

  #queue(list: NewNotification[]): void {
    if (list.length === 0) return;
    this.#enqueueAll(this.#store.add(list));
  }

  #enqueueAll(ids: string[]): void {
    for (const id of ids) {
      // Not queued now (Redis down): the row stays pending and the sweep queues it again.
      this.#enqueue(id).catch((err) => this.#log.warn({ notification: id, err: { message: (err as Error).message } }, 'could not queue a notification; will retry'));
    }
  }
}

/**
 * Where a notification goes, for people (the UI, the API, the store, check-config):
 * never the Slack URL (a credential), nor a webhook URL's path or query, where many
 * services put theirs (Discord's /api/webhooks/<id>/<token>, Mattermost's /hooks/<key>).
 */
export function labelOf(target: NotifyTarget): string {
  if (target.kind === 'slack') return `slack (notify[${target.index}])`;
  const u = new URL(target.url);
  return `webhook ${u.origin}${u.pathname === '/' && !u.search ? '' : '/…'} (notify[${target.index}])`;
}

export type { NotifyEvent };
