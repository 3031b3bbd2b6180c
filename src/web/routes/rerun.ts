import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RerunDecision } from '../../pipeline/routing.ts';
import type { AppDeps } from '../app.ts';

/**
 * A "Re-run" pressed on GitHub (check_run / check_suite `rerequested`, signed like any
 * delivery): a rebuild of that exact commit, recorded with the delivery (a redelivery
 * gets the same runs), requested by `github:<login>`, and in the audit trail (actor
 * `github:<login>`, via `github-webhook`, action `rerun`). It goes through push ingest,
 * so a paused pipeline holds it like a push.
 */
export async function rerunFromGitHub(req: FastifyRequest, reply: FastifyReply, deps: AppDeps, decision: RerunDecision, delivery: string, event: string) {
  // Not recorded or not queued: the app's one error mapping answers 503 and nothing is
  // kept, so GitHub's redelivery starts afresh (as for a push).
  const accepted = await deps.scheduler.submitPush({
    delivery: { id: delivery, event },
    runs: decision.pipelines.map((p) => ({
      pipeline: p.name,
      trigger: 'rebuild' as const,
      commit: decision.commit,
      requestedBy: `github:${decision.by}`,
      deliveryId: delivery,
    })),
  });
  if (!accepted.redelivery) {
    req.log.info({ delivery, ...accepted.outcome, commit: decision.commit, by: decision.by, source: decision.source }, 're-run requested on GitHub');
    const runs = 'runs' in accepted.outcome ? accepted.outcome.runs : [];
    try {
      const audit = deps.store.audit;
      decision.pipelines.forEach((p, i) => {
        audit.record({
          actor: `github:${decision.by}`, role: null, via: 'github-webhook', action: 'rerun', target: p.name, result: 'ok',
          detail: `${decision.source} re-run of ${decision.commit.slice(0, 12)} (delivery ${delivery})${runs[i] ? `: run ${runs[i]}` : ''}`, address: req.ip,
        });
      });
    } catch (err) {
      // The re-run is accepted already: say loudly that its record is missing.
      req.log.error({ err: { message: (err as Error).message }, delivery }, 'could not write the audit trail');
    }
  }
  return reply.code(202).send(accepted.outcome);
}
