import type Docker from 'dockerode';
import { dockerMessage } from './build.ts';

/**
 * Placement pre-check: can swarm place one more task of a service, as an update
 * needs? Swarm itself never says no: a task it cannot place stays pending and the
 * update waits forever (only our own deploy.timeout, 5 min by default, ends it). Asking
 * the same questions its scheduler asks — node ready and active, constraints,
 * platform, max replicas per node, host-mode ports, reserved CPU and memory — turns
 * that into a failure in seconds that names the resource, with the service untouched.
 *
 * `assessPlacement` is pure (tested with node/task JSON); `readPlacement` gathers its
 * input from an engine.
 */

export type PlacementResource = 'nodes' | 'constraints' | 'platform' | 'max-replicas' | 'port' | 'memory' | 'cpu';

export type PlacementVerdict =
  | { ok: true; /** Hostnames of the nodes that could take the task. */ candidates: string[] }
  | { ok: false; resource: PlacementResource; reason: string };

export interface PlacementNode {
  id: string;
  hostname: string;
  role: string;
  ready: boolean;
  availability: string;
  os: string;
  /** As images name it: amd64, arm64, arm, … */
  arch: string;
  labels: Record<string, string>;
  engineLabels: Record<string, string>;
  nanoCpus: number;
  memoryBytes: number;
}

export interface PlacementTask {
  nodeId: string;
  serviceId: string;
  nanoCpus: number;
  memoryBytes: number;
  hostPorts: string[];
}

export interface PlacementInput {
  service: {
    id: string;
    name: string;
    order: 'start-first' | 'stop-first';
    global: boolean;
    /** Replicated services only; 0 means nothing to place. */
    replicas: number;
    constraints: string[];
    /** Placement.Platforms of the spec (what swarm filters on), as "os/arch". */
    specPlatforms: string[];
    maxReplicas: number;
    nanoCpus: number;
    memoryBytes: number;
    /** "8080/tcp" for every host-mode port with a fixed published port. */
    hostPorts: string[];
  };
  nodes: PlacementNode[];
  /** Tasks assigned to a node that swarm still wants running. */
  tasks: PlacementTask[];
  /** The new image's platforms as "os/arch"; undefined when unknown (not checked). */
  imagePlatforms: string[] | undefined;
}

export function assessPlacement(input: PlacementInput): PlacementVerdict {
  const s = input.service;
  if (!s.global && s.replicas === 0) return { ok: true, candidates: [] };
  const list = (nodes: PlacementNode[]) => nodes.map((n) => n.hostname).join(', ');

  let nodes = input.nodes.filter((n) => n.ready && n.availability === 'active');
  if (nodes.length === 0) {
    return { ok: false, resource: 'nodes', reason: `no node is ready and active (${input.nodes.map((n) => `${n.hostname}: ${n.ready ? n.availability : 'down'}`).join(', ') || 'no nodes'})` };
  }
  for (const c of s.constraints) {
    const matching = nodes.filter((n) => matchesConstraint(n, c));
    if (matching.length === 0) return { ok: false, resource: 'constraints', reason: `constraints: no node matches "${c}" (${describeNodes(nodes)})` };
    nodes = matching;
  }
  const platforms = input.imagePlatforms ?? (s.specPlatforms.length > 0 ? s.specPlatforms : undefined);
  if (platforms) {
    const matching = nodes.filter((n) => platforms.includes(`${n.os}/${n.arch}`));
    if (matching.length === 0) {
      return { ok: false, resource: 'platform', reason: `platform: the image is ${platforms.join(', ')}; the nodes are ${nodes.map((n) => `${n.os}/${n.arch} (${n.hostname})`).join(', ')}` };
    }
    nodes = matching;
  }

  // With stop-first, swarm stops one of the service's own tasks before starting its
  // replacement, so that task's ports and reservations are free again on its node.
  const ownFreed = (node: PlacementNode) => (s.order === 'stop-first' ? input.tasks.find((t) => t.nodeId === node.id && t.serviceId === s.id) : undefined);
  const onNode = (node: PlacementNode) => {
    const freed = ownFreed(node);
    return input.tasks.filter((t) => t.nodeId === node.id && t !== freed);
  };

  if (s.maxReplicas > 0) {
    const matching = nodes.filter((n) => onNode(n).filter((t) => t.serviceId === s.id).length < s.maxReplicas);
    if (matching.length === 0) return { ok: false, resource: 'max-replicas', reason: `max replicas per node: ${s.maxReplicas} task(s) of ${s.name} already run on each of ${list(nodes)}` };
    nodes = matching;
  }
  for (const port of s.hostPorts) {
    const matching = nodes.filter((n) => !onNode(n).some((t) => t.hostPorts.includes(port)));
    if (matching.length === 0) {
      return { ok: false, resource: 'port', reason: `port ${port} (host mode) is already published on every eligible node (${list(nodes)})${s.order === 'start-first' ? '; with start-first the old task keeps it while the new one would start' : ''}` };
    }
    nodes = matching;
  }

  const free = nodes.map((n) => {
    const tasks = onNode(n);
    return {
      node: n,
      memory: n.memoryBytes - tasks.reduce((a, t) => a + t.memoryBytes, 0),
      cpu: n.nanoCpus - tasks.reduce((a, t) => a + t.nanoCpus, 0),
      tasks: tasks.length,
    };
  });
  const fits = free.filter((f) => f.memory >= s.memoryBytes && f.cpu >= s.nanoCpus);
  // A global service runs one task per eligible node: every one of them needs room.
  const lacking = s.global ? free.filter((f) => !fits.includes(f)) : fits.length === 0 ? free : [];
  if (lacking.length > 0) {
    const memoryShort = lacking.filter((f) => f.memory < s.memoryBytes);
    if (memoryShort.length > 0) {
      const best = memoryShort.reduce((a, b) => (b.memory > a.memory ? b : a));
      const where = s.global ? `node ${best.node.hostname} has` : `the most free on any node is`;
      return { ok: false, resource: 'memory', reason: `memory: needs ${gib(s.memoryBytes)} reserved, ${where} ${gib(Math.max(0, best.memory))} (${best.node.hostname}: ${gib(best.node.memoryBytes)} in all, ${gib(best.node.memoryBytes - best.memory)} reserved by ${best.tasks} task(s))` };
    }
    const best = lacking.reduce((a, b) => (b.cpu > a.cpu ? b : a));
    const where = s.global ? `node ${best.node.hostname} has` : `the most free on any node is`;
    return { ok: false, resource: 'cpu', reason: `cpu: needs ${cpus(s.nanoCpus)} reserved, ${where} ${cpus(Math.max(0, best.cpu))} (${best.node.hostname}: ${cpus(best.node.nanoCpus)} in all, ${cpus(best.node.nanoCpus - best.cpu)} reserved by ${best.tasks} task(s))` };
  }
  return { ok: true, candidates: fits.map((f) => f.node.hostname) };
}

/** One swarm constraint ("node.labels.zone == eu", "node.role!=manager") against a node. */
export function matchesConstraint(node: PlacementNode, constraint: string): boolean {
  const m = /^\s*([^=!\s]+)\s*(==|!=)\s*(.*?)\s*$/.exec(constraint);
  if (!m) return true; // swarm rejects malformed constraints at service update: not ours to judge
  const [, key, op, want] = m as unknown as [string, string, string, string];
  let have: string | undefined;
  if (key === 'node.id') have = node.id;
  else if (key === 'node.hostname') have = node.hostname;
  else if (key === 'node.role') have = node.role;
  else if (key === 'node.platform.os') have = node.os;
  else if (key === 'node.platform.arch') have = node.arch;
  else if (key.startsWith('node.labels.')) have = node.labels[key.slice('node.labels.'.length)];
  else if (key.startsWith('engine.labels.')) have = node.engineLabels[key.slice('engine.labels.'.length)];
  else return true;
  // Swarm compares case-insensitively, and a missing label only satisfies "!=".
  const equal = have !== undefined && have.toLowerCase() === want.toLowerCase();
  return op === '==' ? equal : !equal;
}

/** Node architectures as the kernel names them, to image architectures. */
export function imageArch(nodeArch: string): string {
  const map: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', armv7l: 'arm', armv6l: 'arm', i386: '386', i686: '386' };
  return map[nodeArch] ?? nodeArch;
}

function describeNodes(nodes: PlacementNode[]): string {
  return nodes
    .map((n) => {
      const labels = Object.entries(n.labels).map(([k, v]) => `${k}=${v}`);
      return `${n.hostname}: ${n.role}${labels.length > 0 ? `, labels ${labels.join(' ')}` : ', no labels'}`;
    })
    .join('; ');
}

const GIB = 1024 ** 3;
function gib(bytes: number): string {
  if (bytes >= GIB) return `${Number((bytes / GIB).toFixed(1))} GiB`;
  return `${Number((bytes / 1024 ** 2).toFixed(1))} MiB`;
}
function cpus(nano: number): string {
  const n = Number((nano / 1e9).toFixed(2));
  return `${n} CPU${n === 1 ? '' : 's'}`;
}

// ---------------------------------------------------------------------------
// Reading the input from an engine.

interface ServiceSpecLike {
  ID: string;
  Spec: Record<string, any>;
}

/**
 * Gathers what `assessPlacement` needs for updating `service` to `image`. The image's
 * platforms come from the registry through the engine (`/distribution`), with `auth`;
 * when that fails the platform is judged from the spec alone, and `warn` says why.
 */
export async function readPlacement(docker: Docker, service: ServiceSpecLike, image: string, order: 'start-first' | 'stop-first', auth: object, warn: (line: string) => void): Promise<PlacementInput> {
  const spec = service.Spec;
  const task = spec.TaskTemplate ?? {};
  const placement = task.Placement ?? {};
  const [nodes, tasks, imagePlatforms] = await Promise.all([
    docker.listNodes() as Promise<Record<string, any>[]>,
    docker.listTasks({ filters: { 'desired-state': ['running'] } }) as Promise<Record<string, any>[]>,
    (docker.getImage(image).distribution({ authconfig: auth } as never) as unknown as Promise<unknown>)
      .then((d: any) => platformsOf(d?.Platforms))
      .catch((err: unknown) => {
        warn(`placement check: could not read the platforms of ${image} from the registry (${dockerMessage(err)}); checking the spec's platforms only`);
        return undefined;
      }),
  ]);
  const endpointPorts = (spec.EndpointSpec?.Ports ?? []) as Record<string, any>[];
  return {
    service: {
      id: service.ID,
      name: String(spec.Name ?? service.ID),
      order,
      global: spec.Mode?.Global !== undefined,
      replicas: spec.Mode?.Replicated ? Number(spec.Mode.Replicated.Replicas ?? 1) : 1,
      constraints: (placement.Constraints ?? []) as string[],
      specPlatforms: platformsOf(placement.Platforms) ?? [],
      maxReplicas: Number(placement.MaxReplicas ?? 0),
      nanoCpus: Number(task.Resources?.Reservations?.NanoCPUs ?? 0),
      memoryBytes: Number(task.Resources?.Reservations?.MemoryBytes ?? 0),
      hostPorts: endpointPorts.filter((p) => p.PublishMode === 'host' && Number(p.PublishedPort) > 0).map((p) => `${p.PublishedPort}/${p.Protocol ?? 'tcp'}`),
    },
    nodes: nodes.map((n) => ({
      id: String(n.ID),
      hostname: String(n.Description?.Hostname ?? n.ID),
      role: String(n.Spec?.Role ?? ''),
      ready: n.Status?.State === 'ready',
      availability: String(n.Spec?.Availability ?? 'active'),
      os: String(n.Description?.Platform?.OS ?? '').toLowerCase(),
      arch: imageArch(String(n.Description?.Platform?.Architecture ?? '')),
      labels: (n.Spec?.Labels ?? {}) as Record<string, string>,
      engineLabels: (n.Description?.Engine?.Labels ?? {}) as Record<string, string>,
      nanoCpus: Number(n.Description?.Resources?.NanoCPUs ?? 0),
      memoryBytes: Number(n.Description?.Resources?.MemoryBytes ?? 0),
    })),
    tasks: tasks
      .filter((t) => t.NodeID && !TERMINAL.has(String(t.Status?.State)))
      .map((t) => ({
        nodeId: String(t.NodeID),
        serviceId: String(t.ServiceID),
        nanoCpus: Number(t.Spec?.Resources?.Reservations?.NanoCPUs ?? 0),
        memoryBytes: Number(t.Spec?.Resources?.Reservations?.MemoryBytes ?? 0),
        hostPorts: ((t.Status?.PortStatus?.Ports ?? []) as Record<string, any>[])
          .filter((p) => p.PublishMode === 'host')
          .map((p) => `${p.PublishedPort}/${p.Protocol ?? 'tcp'}`),
      })),
    imagePlatforms,
  };
}

const TERMINAL = new Set(['complete', 'shutdown', 'failed', 'rejected', 'orphaned', 'remove']);

/** "os/arch" of each platform, leaving out attestation entries ("unknown/unknown"). */
function platformsOf(list: unknown): string[] | undefined {
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const out = new Set<string>();
  for (const p of list as Record<string, unknown>[]) {
    const os = String(p.OS ?? p.os ?? '').toLowerCase();
    const arch = String(p.Architecture ?? p.architecture ?? '').toLowerCase();
    if (!os || !arch || os === 'unknown' || arch === 'unknown') continue;
    out.add(`${os}/${arch}`);
  }
  return out.size > 0 ? [...out] : undefined;
}
