import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { parseRate } from '../../src/config/verify.ts';

const env = { GITHUB_WEBHOOK_SECRET: 'hook-secret-value', DEPLOYER_ADMIN_TOKEN: 'admin-token-0123456789' };

const base = (pipelineExtra: string, top = '') => `
github:
  webhookSecret: \${GITHUB_WEBHOOK_SECRET}
auth:
  adminToken: \${DEPLOYER_ADMIN_TOKEN}
${top}
pipelines:
  - name: www
    repo: ocaml/ocaml.org
    image: 127.0.0.1:5000/ocaml-org
    services: [infra_www]
${pipelineExtra}
`;

function issuesOf(text: string): { path: string; message: string }[] {
  try {
    parseConfig(text, '/etc/deployer/deployer.yaml', env);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  return [];
}

const pipelineOf = (extra: string, top = '') => parseConfig(base(extra, top), '/x/d.yaml', env).pipelines[0]!;

describe('config: verified deploys (deploy.verify, deploy.probe, onFailure, retention.protect)', () => {
  it('is off by default, with documented defaults', () => {
    const c = parseConfig(base(''), '/x/d.yaml', env);
    const p = c.pipelines[0]!;
    expect(p.verify).toBeUndefined();
    expect(p.probe).toBeUndefined();
    expect(p.onFailure).toBe('stop');
    expect(p.retention.protect).toBe(5);
    expect(c.rollbackCheckIntervalMs).toBe(3_600_000);
  });

  it('resolves the issue example: verify by header, probe at 20/s with maxFailed 0', () => {
    const p = pipelineOf(`    deploy:
      verify: { url: "https://ocaml.org/", expect: { header: X-Revision }, timeout: 60s }
      probe: { url: "https://ocaml.org/", rate: 20/s, maxFailed: 0 }
    onFailure: previous-good-push
    retention: { protect: 3 }`);
    expect(p.verify).toEqual({ url: 'https://ocaml.org/', expect: { body: undefined, header: 'X-Revision', status: undefined }, timeoutMs: 60_000, intervalMs: 1_000, requestTimeoutMs: 10_000 });
    expect(p.probe).toEqual({ url: 'https://ocaml.org/', ratePerSecond: 20, maxFailed: 0, requestTimeoutMs: 5_000 });
    expect(p.onFailure).toBe('previous-good-push');
    expect(p.retention.protect).toBe(3);
    // The rollout settings themselves are unchanged by the new keys.
    expect(p.deploy).toEqual({ order: 'start-first', failureAction: 'rollback', monitorMs: 5000, timeoutMs: 300000 });
  });

  it('body and status expectations; the probe watches the verified URL when it names none', () => {
    const p = pipelineOf(`    deploy:
      verify: { url: "http://127.0.0.1:8080/version", expect: { body: "revision {commit}", status: 200 }, interval: 250ms, requestTimeout: 2s }
      probe: { rate: 600/m }`);
    expect(p.verify?.expect).toEqual({ body: 'revision {commit}', header: undefined, status: 200 });
    expect(p.verify?.intervalMs).toBe(250);
    expect(p.probe).toEqual({ url: 'http://127.0.0.1:8080/version', ratePerSecond: 10, maxFailed: undefined, requestTimeoutMs: 5_000 });
  });

  it('names the key of every invalid value', () => {
    const issues = issuesOf(base(`    deploy:
      verify: { url: "ftp://x/", expect: {}, timeout: soon }
      probe: { rate: fast, maxFailed: -1 }
    onFailure: retry
    retention: { protect: 0 }`, 'rollbackCheckInterval: often'));
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining([
      'pipelines[0].deploy.verify.url',
      'pipelines[0].deploy.verify.expect',
      'pipelines[0].deploy.verify.timeout',
      'pipelines[0].deploy.probe.rate',
      'pipelines[0].deploy.probe.maxFailed',
      'pipelines[0].onFailure',
      'pipelines[0].retention.protect',
      'rollbackCheckInterval',
    ]));
    expect(issues.find((i) => i.path === 'pipelines[0].deploy.verify.expect')!.message).toMatch(/body.*header.*status/);
  });

  it('refuses a probe with nowhere to send requests, a rate that is not light traffic, and odd header names', () => {
    expect(issuesOf(base('    deploy: { probe: { rate: 5 } }'))).toContainEqual({ path: 'pipelines[0].deploy.probe.url', message: 'is required (or set deploy.verify.url)' });
    expect(issuesOf(base('    deploy: { probe: { url: "http://x/", rate: 1000/s } }')).map((i) => i.path)).toEqual(['pipelines[0].deploy.probe.rate']);
    expect(issuesOf(base('    deploy: { verify: { url: "http://x/", expect: { header: "X Revision" } } }')).map((i) => i.path)).toEqual(['pipelines[0].deploy.verify.expect.header']);
    expect(issuesOf(base('    deploy: { verify: { url: "http://x/", expect: { status: 700 } } }')).map((i) => i.path)).toEqual(['pipelines[0].deploy.verify.expect.status']);
    expect(issuesOf(base('    deploy: { verify: { url: "http://x/", expect: { status: 200 }, colour: red } }'))).toContainEqual({ path: 'pipelines[0].deploy.verify.colour', message: 'unknown key' });
  });

  it('refuses credentials in URLs (they would be logged) and an interval longer than the timeout', () => {
    expect(issuesOf(base('    deploy: { verify: { url: "https://u:p@ocaml.org/", expect: { status: 200 } } }'))).toContainEqual({ path: 'pipelines[0].deploy.verify.url', message: 'must not contain credentials' });
    expect(issuesOf(base('    deploy: { verify: { url: "https://ocaml.org/health?token=abc", expect: { status: 200 } } }'))).toContainEqual({ path: 'pipelines[0].deploy.verify.url', message: 'must not contain a query string (the URL is logged and shown on every run); verify a path instead' });
    expect(issuesOf(base('    deploy: { verify: { url: "https://ocaml.org/", expect: { status: 200 }, timeout: 2s, interval: 5s } }')).map((i) => i.path)).toEqual(['pipelines[0].deploy.verify.interval']);
  });

  it('rollbackCheckInterval: false turns the registry check off', () => {
    expect(parseConfig(base('', 'rollbackCheckInterval: false'), '/x/d.yaml', env).rollbackCheckIntervalMs).toBe(0);
    expect(parseConfig(base('', 'rollbackCheckInterval: 10m'), '/x/d.yaml', env).rollbackCheckIntervalMs).toBe(600_000);
  });

  it('parses rates', () => {
    expect(parseRate('20/s')).toBe(20);
    expect(parseRate('20')).toBe(20);
    expect(parseRate(2.5)).toBe(2.5);
    expect(parseRate('120/m')).toBe(2);
    expect(parseRate('a lot')).toBeUndefined();
  });
});
