import { constants } from 'node:fs';
import { lstat, open, readlink, realpath } from 'node:fs/promises';
import { join, posix, sep } from 'node:path';
import type { Readable } from 'node:stream';
import dockerignoreModule from '@balena/dockerignore';
import tar from 'tar-fs';
import { DeployerError } from '../lib/errors.ts';

// CommonJS `module.exports = factory`, typed as if it had a default export.
const dockerignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;

/** A .dockerignore is a few lines; more than this is not one. */
export const IGNORE_FILE_MAX = 1024 * 1024;

/**
 * The build context as a tar stream, packed lazily from disk (never held in memory).
 * Only tracked files are candidates; .dockerignore applies as `docker build` applies it,
 * except that the Dockerfile and .dockerignore are always sent, as the CLI does.
 * Uncompressed on purpose: the daemon is local or near, and gzip costs far more CPU
 * than it saves on a socket.
 *
 * The repository is untrusted: its .dockerignore is read only as a regular file inside
 * the context (readRepoFile), symbolic links go into the tar as links (tar-fs uses lstat
 * unless `dereference` is set: the daemon resolves them inside the context, as for the
 * CLI), and no file is packed from beneath a directory that is a link.
 */
export async function packContext(contextDir: string, files: string[], dockerfile: string): Promise<{ stream: Readable; count: number }> {
  let selected = files;
  const ignoreText = await readRepoFile(contextDir, '.dockerignore', IGNORE_FILE_MAX);
  if (ignoreText !== undefined) {
    const keep = dockerignore({ ignorecase: false }).add(ignoreText).createFilter();
    selected = files.filter((f) => keep(f) || f === dockerfile || f === '.dockerignore');
  }
  await refuseLinkedParents(contextDir, selected);
  return { stream: tar.pack(contextDir, { entries: selected, dereference: false }) as unknown as Readable, count: selected.length };
}

/**
 * A file of the repository as text, or undefined when there is none. It must be a
 * regular file inside `root`, or a symbolic link to one; anything else (a link out of
 * the tree, to /proc/self/fd/1 or /dev/zero, a FIFO, a device, a directory, more than
 * `max` bytes) is refused with a clear error instead of being read: a read of a FIFO
 * or a terminal never ends, and no signal stops it.
 */
export async function readRepoFile(root: string, name: string, max: number): Promise<string | undefined> {
  const path = join(root, name);
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
  if (!st) return undefined;
  let target = path;
  if (st.isSymbolicLink()) {
    const link = await readlink(path);
    // Resolved without opening anything; a link into /proc resolves to nothing or out of the tree.
    const [base, real] = await Promise.all([realpath(root), realpath(path).catch(() => undefined)]);
    if (!real || !real.startsWith(base + sep)) {
      throw new DeployerError('build_failed', `${name} is a symbolic link to ${quote(link)}, outside the build context: only a regular file inside the repository is read`);
    }
    target = real;
  }
  // O_NOFOLLOW: the file checked is the file opened; O_NONBLOCK: never wait on a FIFO.
  const fh = await open(target, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    throw new DeployerError('build_failed', `${name} cannot be read: ${err.code ?? err.message}`);
  });
  try {
    const s = await fh.stat();
    if (!s.isFile()) throw new DeployerError('build_failed', `${name} is not a regular file: only a regular file inside the repository is read`);
    if (s.size > max) throw new DeployerError('build_failed', `${name} is ${s.size} bytes: more than the ${max} read`);
    const buf = Buffer.alloc(s.size);
    let read = 0;
    while (read < buf.length) {
      const { bytesRead } = await fh.read(buf, read, buf.length - read, read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return buf.subarray(0, read).toString('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * Refuses a list naming a file beneath a directory that is a symbolic link (or not a
 * directory): lstat of `a/b` follows a link `a`, so tar would pack whatever it points
 * to. Git never checks out such a file; a malformed tree or a bug could list one.
 */
async function refuseLinkedParents(root: string, files: string[]): Promise<void> {
  const checked = new Map<string, Promise<boolean>>();
  const isRealDir = (dir: string) => {
    let p = checked.get(dir);
    if (!p) {
      p = lstat(join(root, dir)).then((s) => s.isDirectory(), () => true); // missing: tar reports it
      checked.set(dir, p);
    }
    return p;
  };
  for (const f of files) {
    for (let dir = posix.dirname(f); dir !== '.' && dir !== '/'; dir = posix.dirname(dir)) {
      if (!(await isRealDir(dir))) {
        throw new DeployerError('build_failed', `${quote(f)} lies beneath ${quote(dir)}, which is a symbolic link or not a directory: refusing to pack it`);
      }
    }
  }
}

/** Repository text in a message: quoted and escaped (no control characters), and short. */
function quote(text: string): string {
  return JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text);
}
