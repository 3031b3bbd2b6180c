import { DeployerError, errorMessage, oneLine } from '../lib/errors.ts';
import { logTo, type RunContext, type ServingRecord } from './run-context.ts';

/**
 * "Never older over newer", decided with git rather than with arrival order. A push
 * (or poll) run deploys only a commit that is the branch head, or a descendant of the
 * commit that serves; anything else is an older push delivered late or replayed (GitHub
 * redelivers, deliveries arrive out of order, a signed body can be resent), and the run
 * ends superseded, saying why. Checked after the fetch (before building) and again
 * before deploying, with what serves and where the branch points read afresh.
 *
 * Runs someone asked for by hand are not checked: a rollback goes back on purpose, and
 * a rebuild builds the branch head (which always passes).
 */

export interface DescentFacts {
  commit: string;
  /** Where the branch points now; null when it could not be learned. */
  head: string | null;
  /** What serves (the last successful deploy of this pipeline); undefined: nothing yet. */
  serving: ServingRecord | undefined;
  /**
   * Whether `serving.commit` is `commit` or an ancestor of it; 'unknown' when git does
   * not know one of them (the other is then not proven a descendant).
   */
  descends: boolean | 'unknown' | undefined;
}

export type DescentVerdict = { deploy: true; why: string } | { deploy: false; message: string; supersededBy?: string };

const short = (sha: string) => sha.slice(0, 7);

/** Pure: what the facts allow. `descends` is only looked at when the other rules do not decide. */
export function judgeDescent(f: DescentFacts): DescentVerdict {
  if (f.head !== null && f.commit === f.head) return { deploy: true, why: `${short(f.commit)} is the branch head` };
  if (!f.serving) return { deploy: true, why: 'nothing deployed yet' };
  if (f.serving.commit === f.commit) return { deploy: true, why: `${short(f.commit)} is what serves` };
  if (f.descends === true) return { deploy: true, why: `${short(f.commit)} descends from ${short(f.serving.commit)}, which serves` };
  const notHead = f.head !== null ? ` and is not the branch head (${short(f.head)})` : '';
  const unknown = f.descends === 'unknown' ? ' (git does not know one of them)' : '';
  return {
    deploy: false,
    message: `${short(f.commit)} is not a descendant of ${short(f.serving.commit)}, which serves${unknown}${notHead}: an older push delivered late or replayed`,
    ...(f.serving.runId ? { supersededBy: f.serving.runId } : {}),
  };
}

/** Whether the run's job is one the check applies to (an automatic one: push or poll). */
export function descentChecked(ctx: RunContext): boolean {
  const { trigger } = ctx.job;
  if (ctx.mode === 'rollback' || ctx.job.image) return false;
  // A job queued before the trigger was carried is treated as automatic: the safe side.
  return trigger === undefined || trigger === 'push' || trigger === 'poll';
}

/**
 * Gathers the facts through the ports and judges. `when` says which check: after the
 * fetch the mirror's fresh branch head is used; before the deploy the branch head is
 * asked of the remote again (the deploy may come minutes later, or on another worker).
 */
export async function checkDescent(ctx: RunContext, when: 'build' | 'deploy', signal: AbortSignal): Promise<DescentVerdict> {
  const { job, deps } = ctx;
  const log = logTo(ctx, null);
  const serving = (await deps.serving?.load().catch(() => undefined)) ?? job.serving;
  let head: string | null = null;
  if (when === 'build') {
    head = ctx.checkout?.branchHead ?? null;
  } else {
    head = await deps.ports.source.branchHead(job.pipeline, signal).catch((err: unknown) => {
      log(`warning: could not ask where ${job.pipeline.branch} points (${oneLine(errorMessage(err))}); checking descent from what serves only`);
      return null;
    });
  }
  if (head !== null) ctx.branchHead = head;
  const facts: DescentFacts = { commit: ctx.commit, head, serving, descends: undefined };
  let verdict = judgeDescent(facts);
  if (!verdict.deploy && serving) {
    try {
      facts.descends = await deps.ports.source.isAncestor({ pipeline: job.pipeline, ancestor: serving.commit, descendant: ctx.commit, signal });
    } catch (err) {
      if (!(err instanceof DeployerError && err.code === 'commit_unknown')) throw err;
      facts.descends = 'unknown';
    }
    verdict = judgeDescent(facts);
  }
  if (verdict.deploy) log(`${when === 'build' ? 'building' : 'deploying'}: ${verdict.why}`);
  else log(verdict.message);
  return verdict;
}
