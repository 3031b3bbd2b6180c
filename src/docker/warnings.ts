import type { DeploySettings } from '../config/types.ts';

/**
 * Settings that cause downtime or false successes, told in words an operator can act
 * on. Pure: from the pipeline's rollout settings and the service's spec as swarm has it.
 */
export function rolloutWarnings(service: string, settings: DeploySettings, spec: Record<string, any>, nodeCount: number): string[] {
  const out: string[] = [];
  const health = spec.TaskTemplate?.ContainerSpec?.Healthcheck as { Test?: string[] } | undefined;
  if (!health?.Test || health.Test[0] === 'NONE') {
    out.push(
      `${service} has no health check: a container that runs but serves nothing is reported as a success. ` +
        `Add one (e.g. docker service update --health-cmd 'wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1' ${service}), or a HEALTHCHECK in the image`,
    );
  }
  if (settings.order === 'stop-first') {
    out.push(`${service}: order stop-first stops the old task before the new one runs: downtime on every deploy. Use deploy.order: start-first`);
  }
  const hostPorts = ((spec.EndpointSpec?.Ports ?? []) as { PublishMode?: string; PublishedPort?: number }[]).filter((p) => p.PublishMode === 'host');
  const replicas = spec.Mode?.Replicated ? Number(spec.Mode.Replicated.Replicas ?? 1) : nodeCount;
  if (settings.order === 'start-first' && hostPorts.length > 0 && replicas >= nodeCount) {
    out.push(
      `${service} publishes port ${hostPorts.map((p) => p.PublishedPort).join(', ')} in host mode with ${replicas} task(s) on ${nodeCount} node(s): ` +
        `with start-first the new task can never bind the port and the update hangs (the deployer's timeout then rolls back). ` +
        `Publish through a reverse proxy on an overlay network instead (as Caddy does for infra_www), or run fewer replicas than nodes`,
    );
  }
  if (settings.failureAction !== 'rollback') {
    out.push(`${service}: failureAction ${settings.failureAction} leaves a failed update in place; use deploy.failureAction: rollback`);
  }
  if (settings.monitorMs < 2_000 && health?.Test && health.Test[0] !== 'NONE') {
    out.push(`${service}: monitor ${settings.monitorMs} ms may end before the first health check fails; use at least the health check's interval × retries`);
  }
  return out;
}
