import { formatDuration } from '../../lib/duration.ts';
import { checkName } from '../../pipeline/routing.ts';
import { isTerminal } from '../../pipeline/states.ts';
import type { RunView } from '../../store/run-store.ts';
import { clip, durationOf, outcomeOf, servicesOf, stageSeconds } from '../outcome.ts';

/**
 * What GitHub should show about a run, derived from the run alone (pure). The reporter
 * compares this with what it already queued and posts only the difference, so applying
 * the same change twice, or seeing a run for the first time when it is already over,
 * gives the same sequence.
 */
export type DeploymentState = 'queued' | 'in_progress' | 'success' | 'failure' | 'error' | 'inactive';

export interface DeploymentStatusPlan {
  state: DeploymentState;
  /** ≤ 140 characters (GitHub's limit). */
  description: string;
}

export interface PlanContext {
  /** The run page: the status's log_url, the check's details_url. */
  runUrl: string;
  /** The pipeline's services, in update order. */
  services: string[];
}

const RANK: Record<DeploymentState, number> = { queued: 0, in_progress: 1, success: 2, failure: 2, error: 2, inactive: 3 };

/**
 * The deployment statuses a run has gone through, in order: `queued` once a worker
 * started it (fetch, build and push come before the rollout), `in_progress` once the
 * rollout started, then `success`, `failure` (the commit failed: a stage, or the
 * rollout, rolled back or timed out) or `error` (it did not complete for another reason:
 * superseded, cancelled, interrupted). `started` says whether the run ever started
 * (a parked run's start time is cleared, but its deployment exists).
 */
export function deploymentStatuses(run: RunView, started: boolean, ctx: PlanContext): DeploymentStatusPlan[] {
  if (!run.commit || !(started || run.startedAt)) return [];
  const sha = run.commit.slice(0, 7);
  const statuses: DeploymentStatusPlan[] = [
    { state: 'queued', description: run.targetImage ? `Run ${run.id}: redeploying the image of ${sha} (rollback)` : `Run ${run.id}: building ${sha}` },
  ];
  const deploy = run.stages.find((s) => s.name === 'deploy');
  if (deploy?.startedAt) statuses.push({ state: 'in_progress', description: clip(`Rolling out to ${ctx.services.join(', ') || 'no services'}`, 140) });
  const outcome = outcomeOf(run);
  if (!outcome) return statuses;
  const d = (text: string): string => clip(text, 140);
  switch (outcome.kind) {
    case 'succeeded':
      statuses.push({ state: 'success', description: d(`Live on ${servicesOf(run)} after ${durationOf(run)}`) });
      break;
    case 'rolled_back':
      statuses.push({ state: 'failure', description: d(`Rolled back: ${outcome.reason}`) });
      break;
    case 'timed_out':
      statuses.push({ state: 'failure', description: d(`Timed out and rolled back: ${outcome.reason}`) });
      break;
    case 'failed':
      statuses.push({ state: 'failure', description: d(`Failed at ${outcome.stage}: ${outcome.reason}`) });
      break;
    case 'superseded':
      statuses.push({ state: 'error', description: d(`Superseded: ${outcome.reason}`) });
      break;
    case 'cancelled':
      statuses.push({ state: 'error', description: d(`Cancelled: ${outcome.reason}`) });
      break;
    case 'interrupted':
      statuses.push({ state: 'error', description: d(`Interrupted: ${outcome.reason}`) });
      break;
  }
  return statuses;
}

/** The statuses still to post after `last` (none posted: null); never goes backwards. */
export function statusesAfter(last: DeploymentState | null, desired: DeploymentStatusPlan[]): DeploymentStatusPlan[] {
  const from = last === null ? -1 : RANK[last];
  return desired.filter((s) => RANK[s.state] > from);
}

export function isFinalDeploymentState(state: DeploymentState | null): boolean {
  return state !== null && RANK[state] >= 2;
}

/** The description of the `inactive` status posted on the deployment a newer one replaced. */
export function replacedDescription(by: RunView): string {
  return clip(`Replaced by ${by.commit?.slice(0, 7) ?? 'a newer deployment'} (run ${by.id})`, 140);
}

export type CheckConclusion = 'success' | 'failure' | 'cancelled' | 'timed_out' | 'skipped';

export interface CheckRunPlan {
  name: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: CheckConclusion | undefined;
  title: string;
  /** Markdown: stages, durations, services' outcomes, the error. */
  summary: string;
}

/** One check run per pipeline on the commit (GitHub App); updated per stage. */
export function checkRunPlan(run: RunView, started: boolean, ctx: PlanContext): CheckRunPlan | undefined {
  if (!run.commit || !(started || run.startedAt)) return undefined;
  const outcome = outcomeOf(run);
  const running = run.stages.find((s) => s.status === 'running');
  const name = checkName(run.pipeline);
  if (!outcome) {
    return { name, status: run.status === 'running' ? 'in_progress' : 'queued', conclusion: undefined, title: stageTitle(running?.name) ?? 'Waiting for a worker', summary: summaryOf(run, ctx) };
  }
  const conclusion: CheckConclusion = {
    succeeded: 'success',
    failed: 'failure',
    rolled_back: 'failure',
    interrupted: 'failure',
    timed_out: 'timed_out',
    cancelled: 'cancelled',
    superseded: 'skipped',
  }[outcome.kind] as CheckConclusion;
  const title = {
    succeeded: `Live on ${servicesOf(run)} after ${durationOf(run)}`,
    failed: `Failed at ${outcome.stage}`,
    rolled_back: 'Rolled back: the previous version serves',
    timed_out: 'Timed out: rolled back, the previous version serves',
    interrupted: 'Interrupted',
    cancelled: 'Cancelled',
    superseded: 'Superseded by a newer push',
  }[outcome.kind];
  return { name, status: 'completed', conclusion, title: clip(title, 200), summary: summaryOf(run, ctx) };
}

export type CommitState = 'pending' | 'success' | 'failure' | 'error';

export interface CommitStatusPlan {
  context: string;
  state: CommitState;
  description: string;
}

/** With a token instead of an App: one commit status per pipeline, same meaning as the check. */
export function commitStatusPlan(run: RunView, started: boolean): CommitStatusPlan | undefined {
  if (!run.commit || !(started || run.startedAt)) return undefined;
  const context = checkName(run.pipeline);
  const outcome = outcomeOf(run);
  if (!outcome) {
    const running = run.stages.find((s) => s.status === 'running');
    return { context, state: 'pending', description: stageTitle(running?.name) ?? 'Waiting for a worker' };
  }
  const d = (text: string): string => clip(text, 140);
  switch (outcome.kind) {
    case 'succeeded':
      return { context, state: 'success', description: d(`Live on ${servicesOf(run)} after ${durationOf(run)}`) };
    case 'failed':
    case 'rolled_back':
    case 'timed_out':
      return { context, state: 'failure', description: d(`${outcome.kind === 'failed' ? 'Failed' : outcome.kind === 'rolled_back' ? 'Rolled back' : 'Timed out, rolled back'}: ${outcome.reason}`) };
    default:
      return { context, state: 'error', description: d(`${capital(outcome.kind)}: ${outcome.reason}`) };
  }
}

function stageTitle(stage: string | undefined): string | undefined {
  switch (stage) {
    case 'fetch':
      return 'Fetching the commit';
    case 'build':
      return 'Building the image';
    case 'push':
      return 'Pushing the image';
    case 'deploy':
      return 'Rolling out';
    default:
      return undefined;
  }
}

function summaryOf(run: RunView, ctx: PlanContext): string {
  const outcome = outcomeOf(run);
  const lines: string[] = [];
  lines.push(`Run [${run.id}](${ctx.runUrl}) of pipeline **${md(run.pipeline)}**, commit \`${run.commit?.slice(0, 12) ?? ''}\`${run.subject ? ` ${md(run.subject)}` : ''} (trigger: ${run.trigger}${run.requestedBy ? `, by ${md(run.requestedBy)}` : ''}).`);
  if (outcome && outcome.kind !== 'succeeded') lines.push('', `**Error:** ${md(outcome.reason)}`);
  lines.push('', '| Stage | Status | Duration |', '|---|---|---|');
  for (const s of run.stages) {
    const secs = stageSeconds(s);
    lines.push(`| ${s.name} | ${s.status} | ${secs === undefined ? (s.status === 'running' ? 'running' : '—') : formatDuration(secs * 1000)} |`);
  }
  if (run.deploys.length) {
    lines.push('', '| Service | Outcome | Serving at the end | What happened |', '|---|---|---|---|');
    for (const d of run.deploys) lines.push(`| ${md(d.service)} | ${d.outcome} | \`${md(d.image ?? '')}\` | ${md(d.message)} |`);
  }
  if (isTerminal(run.status) && run.finishedAt) lines.push('', `Finished ${run.finishedAt} after ${durationOf(run)}.`);
  return clip65k(lines.join('\n'));
}

/** Table cells and inline text: no pipes or newlines breaking the Markdown. */
function md(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s+/g, ' ');
}

function clip65k(text: string): string {
  return text.length > 65_000 ? `${text.slice(0, 64_990)}\n…` : text;
}

function capital(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
