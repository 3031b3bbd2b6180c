// A git repository with a big build context (e.g. 20,000 files, 500 MB – 1 GB), made
// fast: incompressible content, no zlib compression and no delta search, so creating
// it and fetching it costs disk bandwidth, not CPU. Content comes from one random pool
// at varying offsets, with a unique header per file, so no two blobs are equal.
import { randomBytes } from 'node:crypto';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { git } from '../../test/support/site.ts';

export interface BigRepo {
  /** file:// URL of the (non-bare) repository. */
  url: string;
  dir: string;
  commit: string;
  files: number;
  bytes: number;
}

/** The build: a tiny image; the point is sending the whole context. */
export const BIG_DOCKERFILE = 'FROM scratch\nCOPY Dockerfile /Dockerfile\n';

export async function createBigRepo(dir: string, opts: { files: number; bytes: number; deadline?: number }): Promise<BigRepo> {
  await mkdir(dir, { recursive: true });
  await git(['init', '--quiet', '--initial-branch', 'main'], dir);
  for (const [k, v] of [
    ['core.compression', '0'],
    ['core.looseCompression', '0'],
    ['pack.compression', '0'],
    ['pack.window', '0'],
    ['gc.auto', '0'],
  ]) {
    await git(['config', k!, v!], dir);
  }
  await writeFile(join(dir, 'Dockerfile'), BIG_DOCKERFILE);
  // The CLI baseline builds this folder: the .git folder is not part of the context.
  await writeFile(join(dir, '.dockerignore'), '.git\n');
  const pool = randomBytes(4 * 1024 * 1024);
  const per = Math.max(64, Math.floor(opts.bytes / opts.files));
  const perDir = 100;
  let total = 0;
  for (let i = 0; i < opts.files; i++) {
    if (opts.deadline && i % 1000 === 0 && Date.now() > opts.deadline) throw new Error('time budget exhausted while writing the big context');
    const sub = join(dir, 'assets', `d${String(Math.floor(i / perDir)).padStart(4, '0')}`);
    if (i % perDir === 0) await mkdir(sub, { recursive: true });
    const header = Buffer.from(`file ${i}\n`);
    const offset = (i * 7919 * 64) % (pool.length - per);
    const fh = await open(join(sub, `f${String(i).padStart(6, '0')}.bin`), 'w');
    await fh.write(header);
    await fh.write(pool, offset, per - header.length);
    await fh.close();
    total += per;
  }
  await git(['add', '--all'], dir);
  await git(['commit', '--quiet', '--no-verify', '-m', `context of ${opts.files} files`], dir);
  const commit = (await git(['rev-parse', 'HEAD'], dir)).trim();
  return { url: pathToFileURL(dir).href, dir, commit, files: opts.files, bytes: total };
}
