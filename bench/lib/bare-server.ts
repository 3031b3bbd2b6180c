// The baseline for webhook ingest: the same Fastify version answering 202 on the same
// route, taking the body as a buffer like the deployer does, and nothing else
// (no signature check, no store, no queue, no logger).
import Fastify from 'fastify';

const app = Fastify({ logger: false, bodyLimit: 25 * 1024 * 1024 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
app.post('/webhooks/github', async (_req, reply) => reply.code(202).send({ ok: true }));
app.get('/healthz', async () => ({ status: 'ok' }));

await app.listen({ host: '127.0.0.1', port: 0 });
const addr = app.server.address();
process.send?.({ type: 'ready', url: typeof addr === 'object' && addr ? `http://127.0.0.1:${addr.port}` : '' });
process.on('message', (msg: { type: string }) => {
  if (msg.type === 'stop') void app.close().then(() => process.exit(0));
});
process.on('disconnect', () => process.exit(0));
