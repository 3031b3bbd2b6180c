import { AnsiUp } from 'ansi_up';
import type { LogChunkView } from '../store/run-store.ts';
import { classAnsi } from './assets/ansi.js';
import { stepLine, stripAnsi, STAGE_LABELS } from './assets/log-model.js';
import { esc, html, raw, type SafeHtml } from './html.ts';

/**
 * A run's log as HTML, grouped the way GitHub Actions shows a job: one collapsible
 * section per stage, and within it one per BuildKit step (`#N …` lines), every line
 * numbered with an anchor (#L123). ANSI colours become classes; all text is escaped by
 * ansi_up. The browser's live view (assets/app.js) continues with the same grouping.
 */
export function renderLog(chunks: readonly LogChunkView[], firstLine: number, opts: { finished: boolean }): SafeHtml {
  const ansi = classAnsi(AnsiUp);
  const out: string[] = [];
  let stage: string | null | undefined;
  let lineNo = firstLine;
  // Steps of the current stage section: their lines are gathered, then written in order
  // of first appearance (BuildKit interleaves the lines of parallel steps).
  let items: (string | Step)[] = [];
  let steps = new Map<string, Step>();
  // A blank line right after a step's line belongs to that step (BuildKit separates steps so).
  let lastStep: Step | undefined;
  const flush = () => {
    if (stage === undefined) return;
    const label = STAGE_LABELS[stage ?? ''] ?? stage ?? 'run';
    out.push(`<details class="ls" open data-stage="${esc(stage ?? '')}"><summary>${esc(label)}</summary><div class="lb">`);
    for (const item of items) out.push(typeof item === 'string' ? item : renderStep(item, opts.finished));
    out.push('</div></details>');
    items = [];
    steps = new Map();
    lastStep = undefined;
  };
  for (const chunk of chunks) {
    if (chunk.stage !== stage) {
      flush();
      stage = chunk.stage;
    }
    const lines = chunk.text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    for (const line of lines) {
      const n = lineNo++;
      const markup = `<div class="l" id="L${n}"><a class="n" href="#L${n}" aria-label="line ${n}">${n}</a><span class="t">${ansi.ansi_to_html(line)}</span></div>`;
      const s = stepLine(line);
      if (!s) {
        if (line === '' && lastStep) lastStep.lines.push(markup);
        else items.push(markup);
        lastStep = undefined;
        continue;
      }
      let step = steps.get(s.step);
      if (!step) {
        step = { id: s.step, title: undefined, status: undefined, statusText: '', lines: [] };
        steps.set(s.step, step);
        items.push(step);
      }
      if (s.kind === 'title' && step.title === undefined) step.title = stripAnsi(s.text);
      if (s.kind === 'status') {
        step.status = s.status;
        step.statusText = s.text;
      }
      step.lines.push(markup);
      lastStep = step;
    }
  }
  flush();
  return raw(out.join(''));
}

interface Step {
  id: string;
  /** The step's title line (after `#N `), without colours. */
  title: string | undefined;
  status: string | undefined;
  statusText: string;
  lines: string[];
}

/** Finished steps start collapsed, like GitHub's; a failed or unfinished one stays open. */
function renderStep(s: Step, runFinished: boolean): string {
  const open = s.status === 'done' || s.status === 'cached' || (runFinished && !s.status) ? '' : ' open';
  const chip = s.status ? stepChip(s.status, s.statusText) : runFinished ? html`` : html`<span class="step-st step-running">…</span>`;
  const titled = s.title === undefined ? '' : ' data-titled="1"';
  return `<details class="step" data-step="${s.id}"${open}${titled}><summary><span class="step-n">#${s.id}</span> <span class="step-title">${esc(s.title ?? '')}</span> ${chip.value}</summary>${s.lines.join('')}</details>`;
}

/** DONE 1.2s, CACHED, CANCELED as they are; an error says ERROR (its text is the step's last line). */
export function stepChip(status: string, text: string): SafeHtml {
  return html`<span class="step-st step-${status}" title="${text}">${status === 'error' ? 'ERROR' : text}</span>`;
}
