import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import Docker from 'dockerode';
import type { FileMap } from '../support/site.ts';

/**
 * A site whose build has a slow step. The sleep duration carries a unique marker so a
 * test can find the build's own container among the engine's containers.
 */
export function slowBuildFiles(content: string, seconds: number): { files: FileMap; marker: string } {
  const marker = `${seconds}.${randomBytes(3).readUIntBE(0, 3)}`;
  return {
    marker,
    files: {
      Dockerfile: [
        'FROM scratch',
        'COPY busybox /bin/busybox',
        'RUN ["/bin/busybox","--install","-s","/bin"]',
        'COPY www /www',
        `RUN ["/bin/sh","-c","echo slow step; sleep ${marker}"]`,
        'CMD ["httpd","-f","-p","8080","-h","/www"]',
        '',
      ].join('\n'),
      'www/index.html': content,
    },
  };
}

/**
 * A build step's runs whose command contains `marker`: containers (any state; the
 * classic builder runs each step in one) and host processes (BuildKit runs steps as
 * processes of the engine, not as containers). The engine is on this host.
 */
export async function containersWith(marker: string): Promise<string[]> {
  const docker = new Docker();
  const all = await docker.listContainers({ all: true });
  const containers = all.filter((c) => c.Command.includes(marker)).map((c) => `${c.Id.slice(0, 12)} ${c.State}`);
  const processes: string[] = [];
  for (const pid of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(marker)) processes.push(`process ${pid} ${cmd.replaceAll('\0', ' ').trim()}`);
  }
  return [...containers, ...processes];
}
