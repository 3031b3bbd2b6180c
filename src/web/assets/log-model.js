// Shared by the server (first render of a run page) and the browser (lines that arrive
// live), so both group a log the same way. Plain JavaScript: browsers load it as is.

/**
 * BuildKit's plain progress output (`docker build --progress=plain`) prefixes every line
 * of a build step with `#N `: a title (`#3 [build 2/4] RUN make`), output with a time
 * (`#3 0.512 compiling…`), and an outcome (`#3 DONE 1.2s`, `#3 CACHED`, `#3 ERROR: …`,
 * `#3 CANCELED`). Returns what a line is, or null for a line of no step.
 * @param {string} line
 * @returns {{ step: string, kind: 'title' | 'output' | 'status', status?: 'done' | 'cached' | 'error' | 'canceled', text: string } | null}
 */
export function stepLine(line) {
  const m = /^#(\d{1,6}) (.*)$/.exec(line);
  if (!m) return null;
  const step = m[1];
  const rest = m[2];
  if (/^DONE( \d+(\.\d+)?s)?$/.test(rest)) return { step, kind: 'status', status: 'done', text: rest };
  if (rest === 'CACHED') return { step, kind: 'status', status: 'cached', text: rest };
  if (/^ERROR\b/.test(rest)) return { step, kind: 'status', status: 'error', text: rest };
  if (rest === 'CANCELED') return { step, kind: 'status', status: 'canceled', text: rest };
  if (/^\d+(\.\d+)? /.test(rest)) return { step, kind: 'output', text: rest };
  return { step, kind: 'title', text: rest };
}

/** Where lines go: a stage's section, and within it a BuildKit step's section. */
export const STAGE_LABELS = { fetch: 'fetch', build: 'build', push: 'push', deploy: 'deploy', '': 'run' };

/**
 * Text without SGR colour sequences (titles are shown plain).
 * @param {string} s
 */
export function stripAnsi(s) {
  // oxlint-disable-next-line no-control-regex -- ESC is what starts a colour sequence
  return s.replace(/\x1b\[[0-9;:]*m/g, '');
}
