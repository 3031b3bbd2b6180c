import { Webhooks } from '@octokit/webhooks';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ignoreByRef, routeWebhook } from '../../pipeline/routing.ts';
import { QueueUnavailable } from '../../queue/scheduler.ts';
import type { AppDeps } from '../app.ts';
import { rerunFromGitHub } from './rerun.ts';

/** GitHub's own cap on a delivery; anything larger is not from GitHub. */
export const WEBHOOK_BODY_LIMIT = 25 * 1024 * 1024;

/**
 * POST /webhooks/github. The signature covers the raw bytes, so the body is kept as a
 * buffer and verified before anything parses it. Every accepted delivery is recorded
 * (with the runs it created) before the 202, and a redelivery gets the same answer.
 */
export async function webhookRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const webhooks = new Webhooks({ secret: deps.config.github.webhookSecret.reveal() });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_req, body, done) => done(null, body));

  app.post('/webhooks/github', { bodyLimit: WEBHOOK_BODY_LIMIT }, async (req, reply) => {
    const event = header(req.headers['x-github-event']);
    const delivery = header(req.headers['x-github-delivery']);
    const signature = header(req.headers['x-hub-signature-256']);
    if (!event || !delivery) return reply.code(400).send({ error: 'missing X-GitHub-Event or X-GitHub-Delivery header' });
    if (!/^[\w.-]{1,200}$/.test(delivery)) return reply.code(400).send({ error: 'malformed X-GitHub-Delivery header' });
    if (!signature) return reply.code(401).send({ error: 'missing X-Hub-Signature-256 header' });
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const text = raw.toString('utf8');
    // @octokit/webhooks (node:crypto HMAC, constant-time compare). A hand-written check
    // over the raw Buffer was measured too: no difference in the ingest benchmark.
    const valid = await webhooks.verify(text, signature).catch(() => false);
    if (!valid) return reply.code(401).send({ error: 'signature does not match' });

    // A push to a branch nobody deploys is answered from the ref alone (see ignoreByRef).
    const early = isJson(req.headers['content-type']) ? ignoreByRef(event, raw, deps.config.pipelines) : undefined;
    if (early) return reply.code(202).send({ ignored: early.reason });

    let payload: unknown;
    try {
      payload = JSON.parse(jsonText(text, req.headers['content-type']));
    } catch {
      return reply.code(400).send({ error: 'body is not valid JSON' });
    }

    const decision = routeWebhook(event, payload, deps.config.pipelines);
    // Pings and ignored events are answered from routing alone: a redelivery gets the
    // same answer without any record (most deliveries are these; keep them cheap).
    if (decision.kind === 'ping') return reply.code(200).send({ ok: true });
    if (decision.kind === 'ignore') return reply.code(202).send({ ignored: decision.reason });
    if (decision.kind === 'rerun') return rerunFromGitHub(req, reply, deps, decision, delivery, event);
    let accepted;
    try {
      // Concurrent pushes are recorded and queued together (Scheduler.submitPush);
      // a redelivery, even within the same batch, gets the recorded outcome.
      accepted = await deps.scheduler.submitPush({
        delivery: { id: delivery, event },
        runs: decision.pipelines.map((p) => ({
          pipeline: p.name,
          trigger: 'push' as const,
          commit: decision.push.after,
          subject: decision.push.headSubject,
          author: decision.push.headAuthor,
          deliveryId: delivery,
        })),
      });
    } catch (err) {
      // Not queued means not accepted: nothing is kept, so GitHub's redelivery starts afresh.
      if (!(err instanceof QueueUnavailable)) return storeUnavailable(req, reply, err, delivery);
      req.log.error({ err: { message: err.message }, delivery }, 'could not enqueue runs');
      return reply.code(503).send({ error: 'queue unavailable; retry later' });
    }
    if (!accepted.redelivery) req.log.info({ delivery, ...accepted.outcome, commit: decision.push.after }, 'push accepted');
    return reply.code(202).send(accepted.outcome);
  });
}

/** A push that cannot be recorded is not accepted: 503 makes GitHub deliver it again. */
function storeUnavailable(req: FastifyRequest, reply: FastifyReply, err: unknown, delivery: string) {
  req.log.error({ err: { message: (err as Error).message }, delivery }, 'could not record the delivery');
  return reply.code(503).send({ error: 'could not record the delivery; retry later' });
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function isJson(contentType: string | undefined): boolean {
  return contentType === undefined || contentType.startsWith('application/json');
}

/** GitHub can send form-encoded deliveries: the JSON is then the `payload` field. */
function jsonText(body: string, contentType: string | undefined): string {
  if (contentType?.startsWith('application/x-www-form-urlencoded')) {
    const payload = new URLSearchParams(body).get('payload');
    if (payload === null) throw new Error('no payload field');
    return payload;
  }
  return body;
}
