import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

const HERE = join(dirname(fileURLToPath(import.meta.url)), 'assets');

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/**
 * The console's stylesheet and scripts, read once and served from memory: app.css,
 * app.js and the two modules it shares with the server, plus ansi_up (as published,
 * without its source-map comment). About 45 KB in all, uncompressed.
 */
export function loadAssets(): { files: Map<string, Asset>; css: string; js: string; totalBytes: number } {
  const files = new Map<string, Asset>();
  const add = (name: string, body: Buffer, type: string) => files.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` });
  add('app.css', readFileSync(join(HERE, 'app.css')), 'text/css; charset=utf-8');
  for (const f of ['app.js', 'ansi.js', 'log-model.js']) add(f, readFileSync(join(HERE, f)), 'text/javascript; charset=utf-8');
  const ansiUp = readFileSync(fileURLToPath(import.meta.resolve('ansi_up')), 'utf8').replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
  add('ansi_up.js', Buffer.from(ansiUp), 'text/javascript; charset=utf-8');
  const version = createHash('sha256').update([...files.values()].map((f) => f.etag).join()).digest('base64url').slice(0, 10);
  const totalBytes = [...files.values()].reduce((n, f) => n + f.body.length, 0);
  return { files, css: `/assets/app.css?v=${version}`, js: `/assets/app.js?v=${version}`, totalBytes };
}

export function assetRoutes(app: FastifyInstance, assets: ReturnType<typeof loadAssets>): void {
  app.get<{ Params: { file: string } }>('/assets/:file', { config: { access: 'public' } }, async (req, reply) => {
    const a = assets.files.get(req.params.file);
    if (!a) return reply.code(404).send({ error: 'no such asset' });
    // Module imports carry no version: every load revalidates (a 304 costs nothing).
    reply.header('cache-control', 'no-cache').header('etag', a.etag).type(a.type);
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.send(a.body);
  });
}
