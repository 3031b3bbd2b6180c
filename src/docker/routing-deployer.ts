import type { Config, DockerEndpoint } from '../config/types.ts';
import type { DeployPort, DeployRequest, ServiceDeployResult } from '../pipeline/ports.ts';
import { withTimeout } from '../lib/timeout.ts';
import { createDocker, type Docker } from './client.ts';
import { SwarmDeployer } from './service-deployer.ts';

/** How long an engine's "am I a manager" answer is trusted. */
const ROLE_TTL_MS = 30_000;

/** Sends each service's deploy to the Docker engine that runs it (one client per endpoint). */
export class RoutingDeployer implements DeployPort {
  readonly #byHost = new Map<string, { docker: Docker; deployer: SwarmDeployer }>();
  readonly #roles = new Map<string, { manager: boolean; at: number }>();
  readonly #config: Config;
  constructor(config: Config) {
    this.#config = config;
  }

  deploy(req: DeployRequest): Promise<ServiceDeployResult> {
    return this.#for(req.endpoint).deployer.deploy(req);
  }

  restore(req: DeployRequest): Promise<ServiceDeployResult> {
    return this.#for(req.endpoint).deployer.restore(req);
  }

  precheck(req: DeployRequest): Promise<void> {
    return this.#for(req.endpoint).deployer.precheck(req);
  }

  async canDeploy(endpoints: DockerEndpoint[]): Promise<boolean> {
    for (const e of endpoints) if (!(await this.#isManager(e))) return false;
    return true;
  }

  async #isManager(endpoint: DockerEndpoint): Promise<boolean> {
    const known = this.#roles.get(endpoint.host);
    if (known && Date.now() - known.at < ROLE_TTL_MS) return known.manager;
    const info = (await withTimeout(this.#for(endpoint).docker.info(), 5000, 'docker info').catch(() => undefined)) as { Swarm?: { ControlAvailable?: boolean } } | undefined;
    // An engine that does not answer is not known to be a worker node: deploying here
    // fails with Docker's own error, which says more than a hand-off nobody takes.
    const manager = info === undefined || info.Swarm?.ControlAvailable === true;
    this.#roles.set(endpoint.host, { manager, at: Date.now() });
    return manager;
  }

  #for(endpoint: DockerEndpoint): { docker: Docker; deployer: SwarmDeployer } {
    let d = this.#byHost.get(endpoint.host);
    if (!d) {
      const docker = createDocker(endpoint, { sshAuthSock: this.#config.environment.sshAuthSock });
      d = { docker, deployer: new SwarmDeployer(docker, this.#config.registries) };
      this.#byHost.set(endpoint.host, d);
    }
    return d;
  }
}
