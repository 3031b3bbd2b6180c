import { describe, expect, it } from 'vitest';
import { DEFAULT_DEPLOY } from '../../src/config/load.ts';
import { rolloutWarnings } from '../../src/docker/warnings.ts';

const healthy = { TaskTemplate: { ContainerSpec: { Healthcheck: { Test: ['CMD-SHELL', 'true'] } } }, Mode: { Replicated: { Replicas: 1 } } };

describe('rollout warnings', () => {
  it('says nothing for the safe setup (health check, start-first, rollback, no host port)', () => {
    expect(rolloutWarnings('www', DEFAULT_DEPLOY, healthy, 1)).toEqual([]);
  });

  it('warns about a missing health check and says how to add one', () => {
    const [w] = rolloutWarnings('www', DEFAULT_DEPLOY, { TaskTemplate: { ContainerSpec: {} } }, 1);
    expect(w).toMatch(/no health check.*--health-cmd/);
  });

  it('warns about stop-first downtime and non-rollback failure actions', () => {
    const ws = rolloutWarnings('www', { ...DEFAULT_DEPLOY, order: 'stop-first', failureAction: 'pause' }, healthy, 1);
    expect(ws.some((w) => /stop-first.*downtime/.test(w))).toBe(true);
    expect(ws.some((w) => /failureAction pause/.test(w))).toBe(true);
  });

  it('warns that start-first with a host-mode port on one node deadlocks', () => {
    const spec = { ...healthy, EndpointSpec: { Ports: [{ PublishMode: 'host', PublishedPort: 80 }] } };
    expect(rolloutWarnings('caddy', DEFAULT_DEPLOY, spec, 1).join()).toMatch(/host mode.*can never bind/);
    expect(rolloutWarnings('caddy', DEFAULT_DEPLOY, spec, 3)).toEqual([]); // a free node exists
  });
});
