import type { NotifyEvent } from '../config/types.ts';
import type { DriftEntry } from '../monitor/drift.ts';
import type { RunView } from '../store/run-store.ts';
import { durationMs, durationOf, outcomeOf } from '../report/outcome.ts';

/** What a message needs besides the run: links and the repository. */
export interface MessageContext {
  runUrl: string;
  pipelineUrl: string;
  repo: string;
  /** https://github.com/<repo>/commit/<sha>, or undefined without a commit. */
  commitUrl: string | undefined;
  environment: string;
}

const HEADLINE: Record<NotifyEvent, { icon: string; words: string }> = {
  started: { icon: '🚀', words: 'deploy started' },
  succeeded: { icon: '✅', words: 'deployed' },
  failed: { icon: '❌', words: 'failed' },
  rolled_back: { icon: '↩️', words: 'rolled back' },
  timed_out: { icon: '⏱️', words: 'timed out, rolled back' },
  cancelled: { icon: '⏹️', words: 'cancelled' },
  recovered: { icon: '💚', words: 'recovered' },
  drift: { icon: '⚠️', words: 'drift: a service changed outside the deployer' },
};

/**
 * A Slack incoming-webhook message in Block Kit: pipeline, commit (short sha, subject,
 * author, link), outcome, duration, and a button to the run. `text` is the fallback
 * Slack shows in notifications. Pure.
 */
export function slackRunMessage(event: NotifyEvent, run: RunView, ctx: MessageContext): Record<string, unknown> {
  const h = HEADLINE[event];
  const outcome = outcomeOf(run);
  const sha = run.commit?.slice(0, 7) ?? 'branch head';
  const commitLink = run.commit && ctx.commitUrl ? `<${ctx.commitUrl}|\`${sha}\`>` : `\`${sha}\``;
  const subject = run.subject ? ` ${slackEscape(run.subject)}` : '';
  const author = run.author ? ` — ${slackEscape(run.author)}` : '';
  const duration = durationOf(run);
  const title = `${h.icon} ${run.pipeline}: ${h.words}`;
  const fields = [
    { type: 'mrkdwn', text: `*Outcome*\n${outcome ? outcome.kind.replace('_', ' ') : run.status}` },
    { type: 'mrkdwn', text: `*Duration*\n${duration || 'running'}` },
    { type: 'mrkdwn', text: `*Environment*\n${slackEscape(ctx.environment)}` },
    { type: 'mrkdwn', text: `*Trigger*\n${run.trigger}${run.requestedBy ? ` by ${slackEscape(run.requestedBy)}` : ''}` },
  ];
  const blocks: Record<string, unknown>[] = [
    { type: 'header', text: { type: 'plain_text', text: clip(title, 150), emoji: true } },
    { type: 'section', text: { type: 'mrkdwn', text: clip(`${commitLink}${subject}${author}\n${slackEscape(ctx.repo)}`, 3000) } },
    { type: 'section', fields },
  ];
  if (outcome && outcome.kind !== 'succeeded') blocks.push({ type: 'section', text: { type: 'mrkdwn', text: clip(`*Why:* ${slackEscape(outcome.reason)}`, 3000) } });
  blocks.push({ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'View run', emoji: false }, url: ctx.runUrl, action_id: 'view_run' }] });
  return { text: clip(`${title} — ${sha}${run.subject ? ` ${run.subject}` : ''}${duration ? ` after ${duration}` : ''}`, 3000), blocks };
}

export function slackDriftMessage(pipeline: string, entries: DriftEntry[], ctx: { pipelineUrl: string }): Record<string, unknown> {
  const h = HEADLINE.drift;
  const lines = entries.map((e) => `• \`${slackEscape(e.service)}\` runs \`${slackEscape(e.actual ?? '(service gone)')}\`, not the deployed \`${slackEscape(e.recorded)}\``);
  return {
    text: clip(`${h.icon} ${pipeline}: ${h.words}`, 3000),
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clip(`${h.icon} ${pipeline}: drift`, 150), emoji: true } },
      { type: 'section', text: { type: 'mrkdwn', text: clip(`Changed outside the deployer (by hand?):\n${lines.join('\n')}`, 3000) } },
      { type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'View pipeline', emoji: false }, url: ctx.pipelineUrl, action_id: 'view_pipeline' }] },
    ],
  };
}

/**
 * The JSON body of an outbound webhook (Standard Webhooks shape: type, timestamp,
 * data). Everything a receiver needs to act without calling back. Pure.
 */
export function webhookRunPayload(event: NotifyEvent, run: RunView, ctx: MessageContext, at: string): Record<string, unknown> {
  const outcome = outcomeOf(run);
  const ms = durationMs(run);
  return {
    type: `run.${event}`,
    timestamp: at,
    data: {
      event,
      pipeline: run.pipeline,
      repository: ctx.repo,
      environment: ctx.environment,
      outcome: outcome?.kind ?? null,
      reason: outcome && outcome.kind !== 'succeeded' ? outcome.reason : null,
      commit: run.commit ? { sha: run.commit, short: run.commit.slice(0, 7), subject: run.subject, author: run.author, url: ctx.commitUrl ?? null } : null,
      run: {
        id: run.id,
        url: ctx.runUrl,
        status: run.status,
        trigger: run.trigger,
        requestedBy: run.requestedBy,
        createdAt: run.createdAt,
        startedAt: run.startedAt,
        finishedAt: run.finishedAt,
        durationSeconds: ms === undefined ? null : ms / 1000,
        error: run.error,
        image: run.image,
        stages: run.stages,
        deploys: run.deploys.map((d) => ({ service: d.service, outcome: d.outcome, image: d.image, previousImage: d.previousImage, message: d.message })),
      },
    },
  };
}

export function webhookDriftPayload(pipeline: string, repo: string, entries: DriftEntry[], ctx: { pipelineUrl: string }, at: string): Record<string, unknown> {
  return { type: 'pipeline.drift', timestamp: at, data: { event: 'drift', pipeline, repository: repo, url: ctx.pipelineUrl, services: entries } };
}

/** Slack mrkdwn: these three must be escaped; everything else is literal. */
function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
