import type { Config } from '../config/types.ts';
import { withTimeout } from '../lib/timeout.ts';
import { createDocker } from './client.ts';
import { rolloutWarnings } from './warnings.ts';

/**
 * What `check-config` says about the target services as swarm has them now: rollout
 * settings that make deploys lie or take the site down. Docker being unreachable is not
 * a config error: it is said as a note, and the check stays valid.
 */
export async function targetWarnings(config: Config): Promise<string[]> {
  const lines: string[] = [];
  for (const p of config.pipelines) {
    for (const t of p.targets) {
      const docker = createDocker(t.docker, { sshAuthSock: config.environment.sshAuthSock });
      try {
        const nodes = ((await withTimeout(docker.listNodes(), 5000)) as { Status?: { State?: string } }[]).filter((n) => n.Status?.State === 'ready').length;
        const info = (await withTimeout(docker.getService(t.service).inspect(), 5000)) as { Spec: Record<string, any> };
        for (const w of rolloutWarnings(t.service, p.deploy, info.Spec, Math.max(1, nodes))) lines.push(`warning: ${p.name}: ${w}`);
      } catch (err) {
        const status = (err as { statusCode?: number }).statusCode;
        lines.push(status === 404 ? `warning: ${p.name}: service ${t.service} does not exist on ${t.docker.host} yet` : `note: ${p.name}: could not inspect ${t.service} on ${t.docker.host} (${(err as Error).message}); rollout settings not checked`);
      }
    }
  }
  return lines;
}
