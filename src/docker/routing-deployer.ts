import type { Config, DockerEndpoint } from '../config/types.ts';
import type { DeployPort, DeployRequest, ServiceDeployResult } from '../pipeline/ports.ts';
import { createDocker } from './client.ts';
import { SwarmDeployer } from './service-deployer.ts';

/** Sends each service's deploy to the Docker engine that runs it (one client per endpoint). */
export class RoutingDeployer implements DeployPort {
  readonly #byHost = new Map<string, SwarmDeployer>();
  readonly #config: Config;
  constructor(config: Config) {
    this.#config = config;
  }

  deploy(req: DeployRequest): Promise<ServiceDeployResult> {
    return this.#for(req.endpoint).deploy(req);
  }

  restore(req: DeployRequest): Promise<ServiceDeployResult> {
    return this.#for(req.endpoint).restore(req);
  }

  precheck(req: DeployRequest): Promise<void> {
    return this.#for(req.endpoint).precheck(req);
  }

  #for(endpoint: DockerEndpoint): SwarmDeployer {
    let d = this.#byHost.get(endpoint.host);
    if (!d) {
      d = new SwarmDeployer(createDocker(endpoint), this.#config.registries);
      this.#byHost.set(endpoint.host, d);
    }
    return d;
  }
}
