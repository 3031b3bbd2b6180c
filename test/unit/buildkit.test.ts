import { describe, expect, it } from 'vitest';
import { credentialsFor, registryConfigHeader } from '../../src/docker/auth.ts';
import { chooseBuilder } from '../../src/docker/buildkit/engine.ts';
import { createDocker } from '../../src/docker/client.ts';
import { PlainProgress } from '../../src/docker/buildkit/progress.ts';
import { decodeStatus, encodeStatus, type StatusResponse } from '../../src/docker/buildkit/proto.ts';
import { secretMasker } from '../../src/docker/secret-mask.ts';
import { LineBuffer, MAX_LINE_CHARS } from '../../src/docker/stream.ts';
import { Secret } from '../../src/lib/secret.ts';

const T0 = 1_800_000_000;
const ts = (s: number) => ({ seconds: T0 + Math.floor(s), nanos: Math.round((s % 1) * 1e9) });
const vertex = (digest: string, name: string, extra: Record<string, unknown> = {}) => ({ digest, name, inputs: [], ...extra });
const log = (v: string, text: string | Buffer, stream = 1) => ({ vertex: v, stream, msg: typeof text === 'string' ? Buffer.from(text) : text });

/** Round-trips through the wire format, as the engine's messages arrive. */
const wire = (s: Partial<StatusResponse> | Record<string, unknown>): StatusResponse => decodeStatus(encodeStatus(s as Partial<StatusResponse>));

function render(messages: Record<string, unknown>[]): { lines: string[]; progress: PlainProgress } {
  const lines: string[] = [];
  const progress = new PlainProgress((l) => lines.push(l));
  for (const m of messages) progress.push(wire(m));
  progress.finish();
  return { lines, progress };
}

describe('BuildKit progress, rendered like --progress=plain', () => {
  it('numbers steps, prefixes output, joins lines cut between messages (even inside a UTF-8 character), and times steps', () => {
    const euro = Buffer.from('price: 5€\n');
    const { lines } = render([
      { vertexes: [vertex('a', '[internal] load build context')] },
      { vertexes: [vertex('a', '[internal] load build context', { started: ts(0), completed: ts(0.05) })] },
      { vertexes: [vertex('b', '[1/2] COPY site /site', { cached: true, started: ts(0.1), completed: ts(0.1) })] },
      { vertexes: [vertex('c', '[2/2] RUN make', { started: ts(1) })] },
      { logs: [log('c', 'compiling ')] },
      { logs: [log('c', 'main.ml\nlinking')] },
      { logs: [log('c', euro.subarray(0, 9)), log('c', 'warn', 2)] },
      { logs: [log('c', euro.subarray(9))] },
      { logs: [log('c', 'ing done\n', 2)] },
      { logs: [log('c', ' partial at the end')], vertexes: [vertex('c', '[2/2] RUN make', { started: ts(1), completed: ts(2.26) })] },
    ]);
    expect(lines).toEqual([
      '#1 [internal] load build context',
      '#1 DONE 0.1s',
      '#2 [1/2] COPY site /site',
      '#2 CACHED',
      '#3 [2/2] RUN make',
      '#3 compiling main.ml',
      '#3 linkingprice: 5€',
      '#3 warning done',
      '#3  partial at the end',
      '#3 DONE 1.3s',
    ]);
  });

  it('keeps parallel stages readable: every line says whose it is', () => {
    const { lines } = render([
      { vertexes: [vertex('x', '[a 1/1] RUN build-a', { started: ts(0) }), vertex('y', '[b 1/1] RUN build-b', { started: ts(0) })] },
      { logs: [log('x', 'a-line 1\n'), log('y', 'b-line 1\n', 2)] },
      { logs: [log('y', 'b-line 2\nb-li')] },
      { logs: [log('x', 'a-line 2\n')] },
      { logs: [log('y', 'ne 3\n')] },
      { vertexes: [vertex('y', '[b 1/1] RUN build-b', { started: ts(0), completed: ts(1) })] },
      { vertexes: [vertex('x', '[a 1/1] RUN build-a', { started: ts(0), completed: ts(2) })] },
    ]);
    expect(lines).toEqual([
      '#1 [a 1/1] RUN build-a',
      '#2 [b 1/1] RUN build-b',
      '#1 a-line 1',
      '#2 b-line 1',
      '#2 b-line 2',
      '#1 a-line 2',
      '#2 b-line 3',
      '#2 DONE 1.0s',
      '#1 DONE 2.0s',
    ]);
  });

  it('reports the failing step with its last 10 lines, marks the steps it cancelled, and says sub-steps and warnings', () => {
    const output = Array.from({ length: 14 }, (_, i) => `out ${i + 1}\n`).join('');
    const { lines, progress } = render([
      { vertexes: [vertex('p', 'pull base', { started: ts(0) })], statuses: [{ ID: 'sha256:aa', vertex: 'p', current: 500, total: 1500, started: ts(0) }] },
      { statuses: [{ ID: 'sha256:aa', vertex: 'p', current: 1500, total: 1500, started: ts(0), completed: ts(1) }] },
      // Sent again: said once.
      { statuses: [{ ID: 'sha256:aa', vertex: 'p', current: 1500, total: 1500, started: ts(0), completed: ts(1) }] },
      { vertexes: [vertex('p', 'pull base', { started: ts(0), completed: ts(1) })] },
      { warnings: [{ vertex: 'p', level: 1, short: Buffer.from('base image is old'), detail: [Buffer.from('update it')], url: 'https://example.invalid/w' }] },
      { vertexes: [vertex('f', '[2/3] RUN make test', { started: ts(1) }), vertex('o', '[other 1/1] RUN sleep 9', { started: ts(1) })] },
      { logs: [log('f', output), log('f', 'no newline')] },
      {
        vertexes: [
          vertex('f', '[2/3] RUN make test', { started: ts(1), completed: ts(3), error: 'process "/bin/sh -c make test" did not complete successfully: exit code: 2' }),
          vertex('o', '[other 1/1] RUN sleep 9', { started: ts(1), completed: ts(3), error: 'context canceled' }),
        ],
      },
    ]);
    expect(lines.slice(0, 5)).toEqual(['#1 pull base', '#1 sha256:aa 1.50kB / 1.50kB done', '#1 DONE 1.0s', '#1 WARN: base image is old', '#1 update it']);
    expect(lines).toContain('#1 More info: https://example.invalid/w');
    expect(lines.slice(-3)).toEqual(['#2 no newline', '#2 ERROR: process "/bin/sh -c make test" did not complete successfully: exit code: 2', '#3 CANCELED']);
    expect(progress.failure()).toEqual({
      step: '[2/3] RUN make test',
      message: 'process "/bin/sh -c make test" did not complete successfully: exit code: 2',
      lastLines: ['out 6', 'out 7', 'out 8', 'out 9', 'out 10', 'out 11', 'out 12', 'out 13', 'out 14', 'no newline'],
    });
    expect(progress.warnings).toBe(1);
  });

  it('holds memory bounded by the build graph, not its output: a million lines of output', () => {
    let count = 0;
    let last = '';
    const progress = new PlainProgress((l) => {
      count++;
      last = l;
    });
    progress.push(wire({ vertexes: [vertex('v1', '[1/2] RUN seq', { started: ts(0) }), vertex('v2', '[b 1/1] RUN seq', { started: ts(0) })] }));
    let peak = { vertices: 0, pendingChars: 0, tailLines: 0 };
    // 1,000,000 lines, in messages of 1,000 lines each cut in the middle of a line, alternating steps.
    for (let m = 0; m < 1000; m++) {
      const text = Array.from({ length: 1000 }, (_, i) => `line ${m * 1000 + i}\n`).join('');
      const cut = text.length - 4;
      const v = m % 2 === 0 ? 'v1' : 'v2';
      const msg = m < 20 ? wire({ logs: [log(v, text.slice(0, cut))] }) : { vertexes: [], statuses: [], warnings: [], logs: [log(v, text.slice(0, cut))] };
      progress.push(msg);
      progress.push({ vertexes: [], statuses: [], warnings: [], logs: [log(v, text.slice(cut))] });
      const r = progress.retained();
      if (r.pendingChars > peak.pendingChars || r.tailLines > peak.tailLines) peak = r;
    }
    expect(count).toBe(2 + 1_000_000);
    expect(last).toBe('#2 line 999999');
    expect(peak.vertices).toBe(2);
    expect(peak.tailLines).toBeLessThanOrEqual(20);
    expect(peak.pendingChars).toBeLessThan(100);
    progress.push(wire({ vertexes: [vertex('v1', '[1/2] RUN seq', { started: ts(0), completed: ts(5) }), vertex('v2', '[b 1/1] RUN seq', { started: ts(0), completed: ts(5) })] }));
    expect(progress.retained()).toEqual({ vertices: 2, pendingChars: 0, tailLines: 0 });
  });
});

describe('LineBuffer (both builders)', () => {
  it('joins chunks into whole lines, keeps the last state of a carriage-return progress line, drops CR of CRLF', () => {
    const b = new LineBuffer();
    expect(b.push('a')).toEqual([]);
    expect(b.push('b\r\nc')).toEqual(['ab']);
    // As a terminal shows it: the carriage return started the line over.
    expect(b.push('10%\r50%\r100%\n')).toEqual(['100%']);
    expect(b.push('tail\r')).toEqual([]);
    expect(b.flush()).toBe('tail');
    expect(b.flush()).toBeUndefined();
  });

  it('cuts a line that never ends into pieces of at most 64 KiB', () => {
    const b = new LineBuffer();
    const out = b.push('y'.repeat(MAX_LINE_CHARS * 2 + 10));
    expect(out.map((l) => l.length)).toEqual([MAX_LINE_CHARS, MAX_LINE_CHARS]);
    expect(b.pendingChars).toBe(10);
  });
});

describe('builder choice, registry credentials and secret masking', () => {
  it('uses BuildKit unless the engine advises the classic builder', () => {
    expect(chooseBuilder('buildkit', { apiVersion: '1.45', osType: 'linux', builderVersion: '2' })).toEqual({ builder: 'buildkit' });
    // Docker 20.10 gives no advice (no Builder-Version header) and has BuildKit.
    expect(chooseBuilder('buildkit', { apiVersion: '1.41', osType: 'linux', builderVersion: undefined })).toEqual({ builder: 'buildkit' });
    expect(chooseBuilder('buildkit', { apiVersion: '1.45', osType: 'linux', builderVersion: '1' }).builder).toBe('classic');
    expect(chooseBuilder('buildkit', { apiVersion: '1.45', osType: 'windows', builderVersion: '1' })).toEqual({ builder: 'classic', reason: 'it is a windows engine' });
    expect(chooseBuilder('buildkit', { apiVersion: '1.38', osType: 'linux', builderVersion: undefined }).builder).toBe('classic');
    expect(chooseBuilder('classic', { apiVersion: '1.45', osType: 'linux', builderVersion: '2' })).toEqual({ builder: 'classic' });
  });

  it('puts no API version into request paths: the engine serves unversioned requests at its own version', () => {
    for (const host of ['unix:///run/docker.sock', 'tcp://127.0.0.1:2375']) {
      const modem = createDocker(host).modem as unknown as { version?: string };
      expect(modem.version).toBeUndefined();
    }
  });

  it('answers credentials per registry host (Docker Hub under any of its names), and builds X-Registry-Config', () => {
    const registries = [
      { host: '127.0.0.1:5000', username: 'ci', password: new Secret('pw1') },
      { host: 'docker.io', username: 'hub', password: new Secret('pw2') },
      { host: 'open.example', username: undefined, password: undefined },
    ];
    expect(credentialsFor(registries, '127.0.0.1:5000')).toEqual({ username: 'ci', secret: 'pw1' });
    expect(credentialsFor(registries, 'registry-1.docker.io')).toEqual({ username: 'hub', secret: 'pw2' });
    expect(credentialsFor(registries, 'open.example')).toBeUndefined();
    expect(credentialsFor(registries, 'other.example')).toBeUndefined();
    expect(registryConfigHeader(registries)).toEqual({
      '127.0.0.1:5000': { username: 'ci', password: 'pw1', serveraddress: '127.0.0.1:5000' },
      'https://index.docker.io/v1/': { username: 'hub', password: 'pw2', serveraddress: 'https://index.docker.io/v1/' },
    });
  });

  it('masks every occurrence of a secret, and each line of a multi-line one', () => {
    const mask = secretMasker([new Secret('tok-123456'), new Secret('-----BEGIN-----\nAAAABBBBCCCC\n-----END-----\n'), new Secret('ab')]);
    expect(mask('token=tok-123456 and tok-123456')).toBe('token=[secret] and [secret]');
    expect(mask('key line: AAAABBBBCCCC')).toBe('key line: [secret]');
    // Too short to mask without hiding ordinary text.
    expect(mask('about')).toBe('about');
  });
});
