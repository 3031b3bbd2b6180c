import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cleanSubject, MAX_LOG_LINE, MAX_SUBJECT, sanitizeLogLine } from '../../src/lib/log-hygiene.ts';

const ESC = '\x1b';
/** Every ESC left must start an SGR sequence: ESC [ digits/;/: m. */
// oxlint-disable-next-line no-control-regex -- the property under test
const onlySgr = (s: string) => [...s.matchAll(/\x1b/g)].every((m) => /^\x1b\[[0-9;:]*m/.test(s.slice(m.index)));
// oxlint-disable-next-line no-control-regex -- the property under test
const noControls = (s: string) => !/[\x00-\x08\x0a-\x1f\x7f-\x9f]/.test(s.replace(/\x1b\[[0-9;:]*m/g, ''));

describe('sanitizeLogLine', () => {
  it('leaves ordinary lines as they are', () => {
    for (const line of ['', 'Step 1/3 : FROM scratch', '\tindented with a tab', 'üñíçødé ✓ 日本語 🚀', 'a [bracket] and ] and \\']) {
      expect(sanitizeLogLine(line)).toBe(line);
    }
  });

  it('keeps SGR colour and style sequences', () => {
    for (const line of [`${ESC}[31mred${ESC}[0m`, `${ESC}[1;38;5;208mbold orange${ESC}[m`, `${ESC}[38:2::255:0:0mtruecolour${ESC}[39m`, `${ESC}[mreset`]) {
      expect(sanitizeLogLine(line)).toBe(line);
    }
  });

  it('removes OSC sequences: clipboard writes, titles, hyperlinks (BEL or ST terminated, or unterminated)', () => {
    expect(sanitizeLogLine(`a${ESC}]52;c;ZXZpbCBjb21tYW5k${'\x07'}b`)).toBe('ab');
    expect(sanitizeLogLine(`a${ESC}]0;pwned${ESC}\\b`)).toBe('ab');
    expect(sanitizeLogLine(`${ESC}]8;;https://evil.example${ESC}\\click${ESC}]8;;${ESC}\\`)).toBe('click');
    expect(sanitizeLogLine(`before${ESC}]52;c;unterminated until the end`)).toBe('before');
    // An SGR inside an OSC string is part of the string, not a colour.
    expect(sanitizeLogLine(`x${ESC}]2;${ESC}[31mtitle\x07y`)).toBe('xy');
  });

  it('removes DCS, SOS, PM and APC strings', () => {
    for (const intro of ['P', 'X', '^', '_']) expect(sanitizeLogLine(`a${ESC}${intro}payload${ESC}\\b`)).toBe('ab');
  });

  it('removes cursor moves, screen clears, mode changes and other CSI sequences', () => {
    expect(sanitizeLogLine(`${ESC}[2J${ESC}[H${ESC}[10;5Hx${ESC}[1A${ESC}[K`)).toBe('x');
    expect(sanitizeLogLine(`${ESC}[?25l${ESC}[?1049hhidden`)).toBe('hidden');
    // Looks like SGR but is not: private parameters, intermediates.
    expect(sanitizeLogLine(`${ESC}[?1m${ESC}[1 ma`)).toBe('a');
    // Incomplete CSI at the end of a line: the introducer goes, the digits are only text.
    expect(sanitizeLogLine(`a${ESC}[12`)).toBe('a12');
  });

  it('removes other escape sequences and lone ESC', () => {
    expect(sanitizeLogLine(`${ESC}c${ESC}7${ESC}8${ESC}(B${ESC}=a${ESC}`)).toBe('a');
  });

  it('removes C0 controls but tab, DEL and C1 controls', () => {
    expect(sanitizeLogLine('\x00a\x07\x08\tb\rc\x0bd\x0c\x7f')).toBe('a\tbcd');
    // 8-bit CSI and OSC introducers go; what followed them is plain text then.
    expect(sanitizeLogLine('\u009b2J\u009d52;c;x\u009c')).toBe('2J52;c;x');
  });

  it('cuts a long line, keeps its start and says how much was cut', () => {
    const line = 'x'.repeat(MAX_LOG_LINE + 12_345);
    const out = sanitizeLogLine(line);
    expect(out.startsWith('x'.repeat(MAX_LOG_LINE))).toBe(true);
    expect(out.slice(MAX_LOG_LINE)).toBe(` [… 12,345 more characters of this line cut: log lines keep ${MAX_LOG_LINE.toLocaleString('en-US')}]`);
    // 48 MB in, a bounded line out, quickly (it does not scan what it cuts).
    const huge = sanitizeLogLine('y'.repeat(48 * 1024 * 1024));
    expect(huge.length).toBeLessThan(MAX_LOG_LINE + 200);
  });

  it('never splits a surrogate pair when cutting, and never leaves half an escape sequence', () => {
    const emoji = `${'a'.repeat(MAX_LOG_LINE - 1)}🚀tail`;
    const out = sanitizeLogLine(emoji);
    expect(out.startsWith(`${'a'.repeat(MAX_LOG_LINE - 1)} [`)).toBe(true);
    expect(out.isWellFormed()).toBe(true);
    const osc = `${'a'.repeat(MAX_LOG_LINE - 4)}${ESC}]52;c;cut in the middle\x07`;
    expect(onlySgr(sanitizeLogLine(osc))).toBe(true);
    const sgr = `${'a'.repeat(MAX_LOG_LINE - 3)}${ESC}[31mred`;
    expect(onlySgr(sanitizeLogLine(sgr))).toBe(true);
  });

  it('fuzz: random bytes and random escape soup never throw, leave only SGR, and are stable', () => {
    const alphabet = [ESC, ESC, ESC, '[', '[', ']', 'P', '_', '^', 'X', '\\', '\x07', 'm', 'm', ';', ':', '0', '1', '3', '8', '?', ' ', '(', 'H', 'J', 'a', '\t', '\r', '\x00', '\x7f', '\u009b', '\u009d', '\u009c', '🚀', 'é'];
    for (let i = 0; i < 20_000; i++) {
      const bytes = randomBytes(1 + (i % 97));
      const input =
        i % 2 === 0
          ? bytes.toString(i % 4 === 0 ? 'utf8' : 'latin1')
          : Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
      // A throw fails the test too; plain checks keep 20,000 rounds fast.
      const out = sanitizeLogLine(input);
      if (!onlySgr(out) || !noControls(out)) throw new Error(`unsafe output for ${JSON.stringify(input)}: ${JSON.stringify(out)}`);
      if (sanitizeLogLine(out) !== out) throw new Error(`not stable for ${JSON.stringify(input)}`);
    }
  });
});

describe('cleanSubject', () => {
  it('keeps the first line, without any escape sequence or control character', () => {
    expect(cleanSubject('Fix the build\n\nLong body')).toBe('Fix the build');
    expect(cleanSubject(`${ESC}[31mred${ESC}[0m ${ESC}]52;c;eA==\x07subject\r`)).toBe('red subject');
  });

  it('cuts a long subject and says so', () => {
    const out = cleanSubject('s'.repeat(48 * 1024 * 1024));
    expect(out).toBe(`${'s'.repeat(MAX_SUBJECT)} [… cut at ${MAX_SUBJECT} characters]`);
    expect(cleanSubject('short', MAX_SUBJECT, true)).toBe(`short [… cut at ${MAX_SUBJECT} characters]`);
    expect(cleanSubject('a'.repeat(300), 200)).toBe(`${'a'.repeat(200)} [… cut at 200 characters]`);
  });
});
