import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { isTerminal } from '../../pipeline/states.ts';
import type { AppDeps } from '../app.ts';

const RunParams = Type.Object({ id: Type.String({ pattern: '^r[a-z0-9]{8,30}$' }) });
const EventsQuery = Type.Object({ after: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false });

/** Without a position, a new view starts with about as much log as the run page shows. */
export const LIVE_TAIL_LINES = 2000;

/**
 * GET /api/runs/:id/events: the run's log and state as server-sent events.
 *   event `log`  id = log chunk seq, data {stage, text} (text ends with "\n")
 *   event `run`  data = the run, as GET /api/runs/:id, whenever it changes
 *   event `end`  data {status}: the run is over; the server closes the stream
 * A reconnecting EventSource sends Last-Event-ID and gets exactly the chunks after it;
 * `?after=N` does the same by hand (0 = the whole log). A reconnect to a run that is
 * over with nothing new gets 204 (EventSource then stops). 503 when too many views are
 * open or they hold too much unread data.
 */
export async function liveRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.addHook('preClose', async () => deps.live.closeAll());

  app.get<{ Params: { id: string }; Querystring: { after?: number } }>(
    '/api/runs/:id/events',
    { schema: { params: RunParams, querystring: EventsQuery } },
    async (req, reply) => {
      const run = deps.store.getRun(req.params.id);
      if (!run) return reply.code(404).send({ error: `no run "${req.params.id}"` });
      if (deps.live.full) return reply.code(503).header('retry-after', '10').send({ error: 'too many live views open; retry later' });
      const lastEventId = req.headers['last-event-id'];
      const resumeAt = typeof lastEventId === 'string' && /^\d{1,12}$/.test(lastEventId) ? Number(lastEventId) : undefined;
      // An EventSource reconnecting to a run that is over, with nothing new for it: 204
      // is the one answer that makes a browser stop reconnecting.
      if (resumeAt !== undefined && isTerminal(run.status) && deps.store.logChunksAfter(run.id, resumeAt, 1).length === 0) {
        return reply.code(204).send();
      }
      const after = resumeAt ?? req.query.after ?? deps.store.logTailStart(run.id, LIVE_TAIL_LINES);

      // From here on the response is ours: Fastify's hooks (and its headers) no longer run.
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        // nginx buffers responses unless told not to; Caddy flushes event streams itself.
        'x-accel-buffering': 'no',
        'x-frame-options': 'DENY',
        'x-content-type-options': 'nosniff',
      });
      res.write('retry: 2000\n\n');
      const release = deps.live.watch(run.id, {
        write: (frame) => void res.write(frame),
        buffered: () => res.writableLength,
        end: () => res.end(),
        destroy: () => res.destroy(),
      }, after);
      // The response's close (not the request's, which fires once a GET is read) is the
      // connection gone: only then is the view's memory free.
      res.on('close', release);
      req.log.debug({ run: run.id, after }, 'live view opened');
    },
  );
}
