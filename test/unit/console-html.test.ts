import { describe, expect, it } from 'vitest';
import { stepLine } from '../../src/web/assets/log-model.js';
import { html, raw } from '../../src/web/html.ts';
import { renderLog } from '../../src/web/log-view.ts';
import { maskedConfig } from '../../src/web/views/pipeline.ts';
import { Secret } from '../../src/lib/secret.ts';

const XSS = '<img src=x onerror=alert(1)>';
const chunk = (seq: number, stage: 'fetch' | 'build' | null, lines: string[]) => ({ seq, stage, lines: lines.length, text: `${lines.join('\n')}\n` });

describe('html template', () => {
  it('escapes every interpolation, in text and attributes, unless marked safe', () => {
    const name = `"><script>x</script>&'`;
    const out = html`<a title="${name}">${name}</a>${raw('<b>ok</b>')}${[html`<i>${XSS}</i>`, XSS]}${null}${undefined}${false}${0}`.value;
    expect(out).toBe('<a title="&quot;&gt;&lt;script&gt;x&lt;/script&gt;&amp;&#39;">&quot;&gt;&lt;script&gt;x&lt;/script&gt;&amp;&#39;</a><b>ok</b><i>&lt;img src=x onerror=alert(1)&gt;</i>&lt;img src=x onerror=alert(1)&gt;0');
  });
});

describe('BuildKit step lines', () => {
  it('tells titles, output and outcomes apart', () => {
    expect(stepLine('#3 [build 2/4] RUN make')).toEqual({ step: '3', kind: 'title', text: '[build 2/4] RUN make' });
    expect(stepLine('#3 0.512 output…')).toEqual({ step: '3', kind: 'output', text: '0.512 output…' });
    expect(stepLine('#3 DONE 1.2s')).toMatchObject({ step: '3', kind: 'status', status: 'done' });
    expect(stepLine('#12 CACHED')).toMatchObject({ step: '12', kind: 'status', status: 'cached' });
    expect(stepLine('#5 ERROR: process "/bin/sh -c make" did not complete successfully: exit code: 2')).toMatchObject({ kind: 'status', status: 'error' });
    expect(stepLine('#5 CANCELED')).toMatchObject({ kind: 'status', status: 'canceled' });
    expect(stepLine('Step 1/3 : FROM scratch')).toBeNull();
    expect(stepLine('#hashtag')).toBeNull();
  });
});

describe('log view', () => {
  it('groups lines by stage and BuildKit step, numbers them, colours ANSI with classes and escapes the rest', () => {
    const out = renderLog(
      [
        chunk(1, 'fetch', ['fetching abc', XSS]),
        chunk(2, 'build', ['#1 [internal] load build definition', '#1 DONE 0.1s', '', '#2 [build 1/2] RUN make', '#1 0.1 late line of step 1', '#2 0.5 \u001b[31mred\u001b[0m and \u001b[1mbold\u001b[0m <b>', '#2 ERROR: exit code: 2']),
      ],
      10,
      { finished: true },
    ).value;
    expect(out).not.toContain('<img');
    expect(out).not.toContain('<b>');
    expect(out).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(out).toContain('<span class="ansi-red-fg">red</span>');
    expect(out).toContain('<span class="ansi-b">bold</span>');
    expect(out).not.toContain('style=');
    expect(out).not.toContain('\u001b');
    // Line anchors continue from the first line number given.
    for (const n of [10, 11, 12, 18]) expect(out).toContain(`id="L${n}"`);
    expect(out).not.toContain('id="L19"');
    // Stage sections, then step sections: step 1 finished (collapsed) holds its late line and the blank line; step 2 failed (open).
    expect(out.match(/<details class="ls"/g)).toHaveLength(2);
    const step1 = /<details class="step" data-step="1"( open)?[^>]*>.*?<\/details>/s.exec(out)![0];
    expect(step1).not.toContain(' open');
    expect(step1).toContain('late line of step 1');
    expect(step1).toContain('id="L14"'); // the blank line after "#1 DONE"
    expect(step1).toContain('DONE 0.1s');
    const step2 = /<details class="step" data-step="2"[^>]*>/.exec(out)![0];
    expect(step2).toContain(' open');
    expect(out).toContain('<span class="step-st step-error" title="ERROR: exit code: 2">ERROR</span>');
  });

  it('maps 256-colour and true-colour codes to the nearest named class (no inline styles)', () => {
    const out = renderLog([chunk(1, 'build', ['\u001b[38;5;196mA\u001b[0m \u001b[38;2;0;250;0mB\u001b[0m'])], 1, { finished: false }).value;
    expect(out).toContain('<span class="ansi-red-fg">A</span>'); // 196 = rgb(255,0,0)
    expect(out).toContain('<span class="ansi-bright-green-fg">B</span>');
  });
});

describe('effective config on the pipeline page', () => {
  it('masks secrets and credentials in URLs', () => {
    const masked = maskedConfig({ url: 'https://user:hunter2@git.example.org/r.git', build: { args: { NPM_TOKEN: 'abc', VERSION: '1' } }, pw: new Secret('s3cret') }) as any;
    expect(JSON.stringify(masked)).not.toMatch(/hunter2|abc|s3cret/);
    expect(masked.build.args.VERSION).toBe('1');
  });
});
