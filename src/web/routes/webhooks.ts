import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { cleanSubject, MAX_AUTHOR } from '../../lib/log-hygiene.ts';
import { ignoreByRef, routeWebhook } from '../../pipeline/routing.ts';
import type { AppDeps } from '../app.ts';
import { rerunFromGitHub } from './rerun.ts';
import { BodyBudget, checkDeliveryHeaders, isRefusal, readSignedBody, RETRY_AFTER_S, verifyEmpty, type DeliveryHeaders, type Refusal, type Share, type SignedBody } from './webhook-intake.ts';

/** What the intake decided about one request before its body was read. */
interface Admitted {
  headers: DeliveryHeaders;
  share: Share;
}

/**
 * POST /webhooks/github. Nothing is read before the headers say it may be GitHub's and
 * the body fits what unverified deliveries may hold (webhook-intake.ts); the body then
 * streams through the HMAC (over the raw bytes received) and only a verified body is
 * parsed. Every accepted delivery is recorded (with the runs it created) before the 202,
 * and a redelivery gets the same answer.
 */
export async function webhookRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const secret = deps.config.github.webhookSecret.reveal();
  const budget = new BodyBudget();
  const admitted = new WeakMap<FastifyRequest, Admitted>();
  const release = (req: FastifyRequest) => admitted.get(req)?.share.release();

  app.removeAllContentTypeParsers();
  // The body is handed over as a stream: read here, through the HMAC, within the budget.
  app.addContentTypeParser('*', (req, payload, done) => {
    const a = admitted.get(req);
    if (!a) return done(null, undefined);
    readSignedBody(payload, { secret, signature: a.headers.signature, length: a.headers.length, share: a.share }).then(
      (body) => done(null, body),
      (err: Error) => done(Object.assign(err, { statusCode: 400 })),
    );
  });

  app.post('/webhooks/github', {
    // Before the body: headers, length and the budget decide whether it is read at all.
    onRequest: (req, reply, done) => {
      const headers = checkDeliveryHeaders(req.headers);
      if (isRefusal(headers)) return void refuse(reply, headers);
      const share = budget.admit(headers.length ?? 0);
      if (!share) {
        // Logged as a request with status 503 like any other; the details only at debug.
        req.log.debug({ bodies: budget.bodies, bytes: budget.bytes }, 'webhook bodies over budget');
        return void refuse(reply, { status: 503, error: 'too many webhook bodies being received; retry later', retryAfter: RETRY_AFTER_S });
      }
      admitted.set(req, { headers, share });
      done();
    },
    // Whatever happens, the share is given back (the reader releases it as soon as it ends).
    onResponse: (req, _reply, done) => {
      release(req);
      done();
    },
    onRequestAbort: (req, done) => {
      release(req);
      done();
    },
  }, async (req, reply) => {
    const { event, delivery, signature } = admitted.get(req)!.headers;
    const body = req.body as SignedBody | Refusal | undefined;
    if (isRefusal(body)) return refuse(reply, body);
    const raw = body?.raw ?? Buffer.alloc(0);
    const valid = body ? body.valid : verifyEmpty(secret, signature);
    if (!valid) return reply.code(401).send({ error: 'signature does not match' });

    // A push to a branch nobody deploys is answered from the ref alone (see ignoreByRef).
    const early = isJson(req.headers['content-type']) ? ignoreByRef(event, raw, deps.config.pipelines) : undefined;
    if (early) return reply.code(202).send({ ignored: early.reason });

    let payload: unknown;
    try {
      payload = JSON.parse(jsonText(raw.toString('utf8'), req.headers['content-type']));
    } catch {
      return reply.code(400).send({ error: 'body is not valid JSON' });
    }

    const decision = routeWebhook(event, payload, deps.config.pipelines);
    // Pings and ignored events are answered from routing alone: a redelivery gets the
    // same answer without any record (most deliveries are these; keep them cheap).
    if (decision.kind === 'ping') return reply.code(200).send({ ok: true });
    if (decision.kind === 'ignore') return reply.code(202).send({ ignored: decision.reason });
    if (decision.kind === 'rerun') return rerunFromGitHub(req, reply, deps, decision, delivery, event);
    // Concurrent pushes are recorded and queued together (Scheduler.submitPush); a
    // redelivery, even within the same batch, gets the recorded outcome. Not recorded or
    // not queued means not accepted: nothing is kept, and the error handler answers 503,
    // so GitHub's redelivery starts afresh.
    const accepted = await deps.scheduler.submitPush({
      delivery: { id: delivery, event },
      runs: decision.pipelines.map((p) => ({
        pipeline: p.name,
        trigger: 'push' as const,
        commit: decision.push.after,
        // The payload's commit message can be megabytes: only a clean, capped first line is kept.
        subject: cleanSubject(decision.push.headSubject),
        author: cleanSubject(decision.push.headAuthor, MAX_AUTHOR),
        deliveryId: delivery,
      })),
    });
    if (!accepted.redelivery) req.log.info({ delivery, ...accepted.outcome, commit: decision.push.after }, 'push accepted');
    return reply.code(202).send(accepted.outcome);
  });
}

/** A refusal before or while reading: the rest of the body is not read, so the connection closes. */
function refuse(reply: FastifyReply, r: Refusal) {
  reply.header('connection', 'close');
  if (r.retryAfter !== undefined) reply.header('retry-after', String(r.retryAfter));
  return reply.code(r.status).send({ error: r.error });
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
