import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { isTerminal } from '../../pipeline/states.ts';
import type { ConsoleKit } from '../console.ts';
import type { LiveSink } from '../live.ts';

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
export async function liveRoutes(app: FastifyInstance, kit: ConsoleKit): Promise<void> {
  const deps = kit.deps;
  app.addHook('preClose', async () => {
    deps.live.closeAll();
    kit.overview.close();
  });

  /**
   * Checks the client's limits, then takes the response over for an event stream.
   * Returns the sink and the function to call when the connection closes, or
   * undefined when the answer (503) was sent.
   */
  const openStream = (req: FastifyRequest, reply: FastifyReply): { sink: LiveSink; onClose(release: () => void): void } | undefined => {
    const admitted = deps.live.admit({ actor: req.actor?.key, address: req.ip });
    if (typeof admitted === 'string') {
      void reply.code(503).header('retry-after', '10').send({ error: `${admitted}; close some or retry later` });
      return undefined;
    }
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
    const sink: LiveSink = {
      write: (frame) => void res.write(frame),
      buffered: () => res.writableLength,
      end: () => res.end(),
      destroy: () => res.destroy(),
    };
    return {
      sink,
      // The response's close (not the request's, which fires once a GET is read) is the
      // connection gone: only then is the view's memory free.
      onClose: (release) =>
        res.on('close', () => {
          release();
          admitted();
        }),
    };
  };

  /** GET /api/events: `change` whenever what the overview shows may have changed (see OverviewLive). */
  app.get('/api/events', async (req, reply) => {
    if (kit.overview.streams >= 1000) return reply.code(503).header('retry-after', '10').send({ error: 'too many live views open; retry later' });
    const stream = openStream(req, reply);
    if (!stream) return reply;
    stream.onClose(kit.overview.watch(stream.sink));
  });

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
      const stream = openStream(req, reply);
      if (!stream) return reply;
      stream.onClose(deps.live.watch(run.id, stream.sink, after));
      req.log.debug({ run: run.id, after }, 'live view opened');
    },
  );
}
