import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RerunDecision } from '../../pipeline/routing.ts';
import { QueueUnavailable } from '../../queue/scheduler.ts';
import { AuditStore } from '../../store/audit-store.ts';
import type { AppDeps } from '../app.ts';

/**
 * A "Re-run" pressed on GitHub (check_run / check_suite `rerequested`, signed like any
 * delivery): a rebuild of that exact commit, recorded with the delivery (a redelivery
 * gets the same runs), requested by `github:<login>`, and in the audit trail (actor
 * `github:<login>`, via `github-webhook`, action `rerun`). It goes through push ingest,
 * so a paused pipeline holds it like a push.
 */
export async function rerunFromGitHub(req: FastifyRequest, reply: FastifyReply, deps: AppDeps, decision: RerunDecision, delivery: string, event: string) {
  let accepted;
  try {
    accepted = await deps.scheduler.submitPush({
      delivery: { id: delivery, event },
      runs: decision.pipelines.map((p) => ({
        pipeline: p.name,
        trigger: 'rebuild' as const,
        commit: decision.commit,
        requestedBy: `github:${decision.by}`,
        deliveryId: delivery,
      })),
    });
  } catch (err) {
    if (!(err instanceof QueueUnavailable)) req.log.error({ err: { message: (err as Error).message }, delivery }, 'could not record the delivery');
    else req.log.error({ err: { message: err.message }, delivery }, 'could not enqueue runs');
    return reply.code(503).send({ error: 'could not accept the re-run; retry later' });
  }
  if (!accepted.redelivery) {
    req.log.info({ delivery, ...accepted.outcome, commit: decision.commit, by: decision.by, source: decision.source }, 're-run requested on GitHub');
    const runs = 'runs' in accepted.outcome ? accepted.outcome.runs : [];
    try {
      const audit = new AuditStore(deps.store.db);
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
