import { describe, expect, it } from 'vitest';
import { assessPlacement, matchesConstraint, type PlacementInput, type PlacementNode, type PlacementTask } from '../../src/docker/placement.ts';

const GiB = 1024 ** 3;
const node = (hostname: string, over: Partial<PlacementNode> = {}): PlacementNode => ({
  id: `id-${hostname}`, hostname, role: 'worker', ready: true, availability: 'active', os: 'linux', arch: 'amd64',
  labels: {}, engineLabels: {}, nanoCpus: 2e9, memoryBytes: 24 * GiB, ...over,
});
const task = (nodeHost: string, over: Partial<PlacementTask> = {}): PlacementTask => ({ nodeId: `id-${nodeHost}`, serviceId: 'other', nanoCpus: 0, memoryBytes: 0, hostPorts: [], ...over });

function input(over: { service?: Partial<PlacementInput['service']>; nodes?: PlacementNode[]; tasks?: PlacementTask[]; imagePlatforms?: string[] } = {}): PlacementInput {
  return {
    service: { id: 'svc', name: 'www', order: 'start-first', global: false, replicas: 1, constraints: [], specPlatforms: [], maxReplicas: 0, nanoCpus: 0, memoryBytes: 0, hostPorts: [], ...over.service },
    nodes: over.nodes ?? [node('a')],
    tasks: over.tasks ?? [],
    imagePlatforms: over.imagePlatforms,
  };
}

describe('placement pre-check', () => {
  it('memory: reservations of running tasks are subtracted; the shortfall is named', () => {
    const v = assessPlacement(input({ service: { memoryBytes: 64 * GiB }, nodes: [node('a'), node('b', { memoryBytes: 32 * GiB })], tasks: [task('b', { memoryBytes: 8.9 * GiB })] }));
    expect(v).toEqual({ ok: false, resource: 'memory', reason: 'memory: needs 64 GiB reserved, the most free on any node is 24 GiB (a: 24 GiB in all, 0 MiB reserved by 0 task(s))' });
    const fits = assessPlacement(input({ service: { memoryBytes: 20 * GiB }, nodes: [node('a'), node('b', { memoryBytes: 32 * GiB })], tasks: [task('a', { memoryBytes: 8 * GiB })] }));
    expect(fits).toEqual({ ok: true, candidates: ['b'] });
  });

  it('start-first needs room for the old and the new task; stop-first frees the old one first', () => {
    const own = task('a', { serviceId: 'svc', nanoCpus: 1.5e9 });
    expect(assessPlacement(input({ service: { nanoCpus: 1.5e9 }, tasks: [own] }))).toMatchObject({ ok: false, resource: 'cpu', reason: expect.stringMatching(/^cpu: needs 1.5 CPUs reserved, the most free on any node is 0.5 CPUs/) });
    expect(assessPlacement(input({ service: { nanoCpus: 1.5e9, order: 'stop-first' }, tasks: [own] }))).toEqual({ ok: true, candidates: ['a'] });
  });

  it('host-mode ports: a node whose task publishes the port cannot take another', () => {
    const own = task('a', { serviceId: 'svc', hostPorts: ['8443/tcp'] });
    const v = assessPlacement(input({ service: { hostPorts: ['8443/tcp'] }, tasks: [own] }));
    expect(v).toMatchObject({ ok: false, resource: 'port', reason: expect.stringMatching(/^port 8443\/tcp \(host mode\) is already published on every eligible node \(a\); with start-first/) });
    expect(assessPlacement(input({ service: { hostPorts: ['8443/tcp'], order: 'stop-first' }, tasks: [own] })).ok).toBe(true);
    expect(assessPlacement(input({ service: { hostPorts: ['8443/udp'] }, tasks: [own] })).ok).toBe(true);
    expect(assessPlacement(input({ service: { hostPorts: ['8443/tcp'] }, nodes: [node('a'), node('b')], tasks: [own] }))).toEqual({ ok: true, candidates: ['b'] });
  });

  it('constraints against labels, role and hostname', () => {
    const n = node('web-1', { role: 'manager', labels: { zone: 'eu' }, engineLabels: { disk: 'ssd' } });
    expect(matchesConstraint(n, 'node.labels.zone==eu')).toBe(true);
    expect(matchesConstraint(n, 'node.labels.zone == EU')).toBe(true);
    expect(matchesConstraint(n, 'node.labels.zone!=eu')).toBe(false);
    expect(matchesConstraint(n, 'node.labels.missing!=x')).toBe(true);
    expect(matchesConstraint(n, 'node.labels.missing==x')).toBe(false);
    expect(matchesConstraint(n, 'node.role==worker')).toBe(false);
    expect(matchesConstraint(n, 'node.hostname==web-1')).toBe(true);
    expect(matchesConstraint(n, 'engine.labels.disk==ssd')).toBe(true);
    const v = assessPlacement(input({ service: { constraints: ['node.role==manager', 'node.labels.zone==us'] }, nodes: [n] }));
    expect(v).toEqual({ ok: false, resource: 'constraints', reason: 'constraints: no node matches "node.labels.zone==us" (web-1: manager, labels zone=eu)' });
  });

  it('image platform against node platforms; unknown platforms are not judged', () => {
    expect(assessPlacement(input({ imagePlatforms: ['linux/arm64'] }))).toEqual({ ok: false, resource: 'platform', reason: 'platform: the image is linux/arm64; the nodes are linux/amd64 (a)' });
    expect(assessPlacement(input({ imagePlatforms: ['linux/arm64', 'linux/amd64'] })).ok).toBe(true);
    expect(assessPlacement(input({ service: { specPlatforms: ['linux/arm64'] } })).ok).toBe(false);
    expect(assessPlacement(input({ imagePlatforms: ['linux/amd64'], service: { specPlatforms: ['linux/arm64'] } })).ok).toBe(true);
  });

  it('drained or down nodes, max replicas per node, global services, zero replicas', () => {
    expect(assessPlacement(input({ nodes: [node('a', { availability: 'drain' }), node('b', { ready: false })] }))).toEqual({ ok: false, resource: 'nodes', reason: 'no node is ready and active (a: drain, b: down)' });
    expect(assessPlacement(input({ service: { maxReplicas: 1 }, tasks: [task('a', { serviceId: 'svc' })] }))).toMatchObject({ ok: false, resource: 'max-replicas' });
    const global = input({ service: { global: true, memoryBytes: 10 * GiB }, nodes: [node('a'), node('b', { memoryBytes: 8 * GiB })] });
    expect(assessPlacement(global)).toMatchObject({ ok: false, resource: 'memory', reason: expect.stringMatching(/node b has 8 GiB/) });
    expect(assessPlacement(input({ service: { replicas: 0, memoryBytes: 999 * GiB } })).ok).toBe(true);
  });
});
