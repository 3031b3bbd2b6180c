// Real git repositories holding a tiny web site, as the deployer would fetch
// them from GitHub. The image is built FROM scratch around static busybox
// because no base image can be pulled here.
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { baseEnv, run } from './exec.ts';

/** Path -> content; `null` deletes the file. */
export type FileMap = Record<string, string | null>;

export interface SiteRepo {
  /** file:// URL of the bare repository (what the deployer clones/fetches). */
  url: string;
  bareDir: string;
  workDir: string;
  /** Writes/deletes files, commits everything (busybox included) and pushes `main`. */
  commit(files: FileMap, message: string): Promise<string>;
  cleanup(): Promise<void>;
}

export const BUSYBOX_PATH = '/bin/busybox';
export const BRANCH = 'main';

// GIT_CONFIG_GLOBAL=/dev/null + NOSYSTEM: the host's git config (signing,
// hooks, default branch, credential helpers) must never change a test.
export function gitEnv(): NodeJS.ProcessEnv {
  return baseEnv({
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'Deployer Test',
    GIT_AUTHOR_EMAIL: 'deployer-test@example.invalid',
    GIT_COMMITTER_NAME: 'Deployer Test',
    GIT_COMMITTER_EMAIL: 'deployer-test@example.invalid',
  });
}

export function git(args: string[], cwd: string): Promise<string> {
  return run('git', args, { env: gitEnv(), cwd });
}

const SITE_DOCKERFILE_HEAD = [
  'FROM scratch',
  'COPY busybox /bin/busybox',
  'RUN ["/bin/busybox","--install","-s","/bin"]',
];

/** A site that serves `content` at GET / on port 8080. */
export function siteFiles(content: string): FileMap {
  return {
    Dockerfile: [
      ...SITE_DOCKERFILE_HEAD,
      'COPY www /www',
      'CMD ["httpd","-f","-p","8080","-h","/www"]',
      '',
    ].join('\n'),
    'www/index.html': content,
  };
}

/** A Dockerfile whose RUN step exits 3: the build itself must fail. */
export function failingBuildFiles(): FileMap {
  return {
    Dockerfile: [...SITE_DOCKERFILE_HEAD, 'RUN ["/bin/sh","-c","echo about to fail; exit 3"]', ''].join('\n'),
    'www/index.html': 'never served\n',
  };
}

/** Builds fine, but every container exits with status 1 right away. */
export function exitingContainerFiles(content: string): FileMap {
  return {
    Dockerfile: [...SITE_DOCKERFILE_HEAD, 'COPY www /www', 'CMD ["/bin/sh","-c","echo exiting; exit 1"]', ''].join(
      '\n',
    ),
    'www/index.html': content,
  };
}

/** Writes a file map into `dir` (shared with the swarm helpers' build contexts). */
export async function writeFiles(dir: string, files: FileMap): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const target = join(dir, path);
    if (content === null) {
      await rm(target, { force: true });
    } else {
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content);
    }
  }
}

/** Static busybox in `dir`, executable (git records the 755 mode). */
export async function copyBusybox(dir: string): Promise<void> {
  await copyFile(BUSYBOX_PATH, join(dir, 'busybox'));
  await chmod(join(dir, 'busybox'), 0o755);
}

export async function createSiteRepo(): Promise<SiteRepo> {
  const root = await mkdtemp(join(tmpdir(), 'test-site-'));
  const bareDir = join(root, 'site.git');
  const workDir = join(root, 'work');
  try {
    await mkdir(bareDir);
    await mkdir(workDir);
    await git(['init', '--quiet', '--bare', '--initial-branch', BRANCH], bareDir);
    await git(['init', '--quiet', '--initial-branch', BRANCH], workDir);
    await git(['remote', 'add', 'origin', bareDir], workDir);
    // Not committed yet: it goes in with the first commit() so the repo has no
    // history the test did not ask for.
    await copyBusybox(workDir);
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }

  return {
    url: pathToFileURL(bareDir).href,
    bareDir,
    workDir,
    async commit(files, message) {
      await writeFiles(workDir, files);
      await git(['add', '--all'], workDir);
      // --allow-empty: a new commit with an unchanged tree is a legitimate
      // "redeploy the same thing" push.
      await git(['commit', '--quiet', '--allow-empty', '--no-verify', '-m', message], workDir);
      await git(['push', '--quiet', 'origin', `HEAD:refs/heads/${BRANCH}`], workDir);
      return (await git(['rev-parse', 'HEAD'], workDir)).trim();
    },
    async cleanup() {
      await rm(root, { recursive: true, force: true });
    },
  };
}
