import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import dockerignoreModule from '@balena/dockerignore';
import tar from 'tar-fs';

// CommonJS `module.exports = factory`, typed as if it had a default export.
const dockerignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;

/**
 * The build context as a tar stream, packed lazily from disk (never held in memory).
 * Only tracked files are candidates; .dockerignore applies as `docker build` applies it,
 * except that the Dockerfile and .dockerignore are always sent, as the CLI does.
 * Uncompressed on purpose: the daemon is local or near, and gzip costs far more CPU
 * than it saves on a socket.
 */
export async function packContext(contextDir: string, files: string[], dockerfile: string): Promise<{ stream: Readable; count: number }> {
  let selected = files;
  const ignoreText = await readFile(join(contextDir, '.dockerignore'), 'utf8').catch(() => undefined);
  if (ignoreText !== undefined) {
    const keep = dockerignore({ ignorecase: false }).add(ignoreText).createFilter();
    selected = files.filter((f) => keep(f) || f === dockerfile || f === '.dockerignore');
  }
  return { stream: tar.pack(contextDir, { entries: selected }) as unknown as Readable, count: selected.length };
}
