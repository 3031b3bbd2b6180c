// The console's only script. Every action works without it (plain forms); it adds live
// updates over server-sent events and a few conveniences. Server-rendered fragments
// replace parts of the page, so there is one renderer: the server's.
import { AnsiUp } from './ansi_up.js';
import { classAnsi } from './ansi.js';
import { stepLine, stripAnsi, STAGE_LABELS } from './log-model.js';

const $ = (sel, root = document) => root.querySelector(sel);

/** Fetches this page's fragment (`main` or `head`) and hands back its markup. */
async function fragment(kind) {
  const res = await fetch(location.pathname + location.search, { headers: { 'x-deployer-fragment': kind }, credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const t = document.createElement('template');
  t.innerHTML = await res.text();
  return t.content;
}

/** Runs `fn` at most once at a time, and once more if asked again meanwhile. */
function coalesced(fn) {
  let running = false;
  let again = false;
  const go = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } catch {
      /* the next change tries again */
    } finally {
      running = false;
      if (again) {
        again = false;
        setTimeout(go, 250);
      }
    }
  };
  return go;
}

// Lines inside collapsed sections: open them when a line anchor is the target.
function revealTarget() {
  const id = location.hash.slice(1);
  if (!/^L\d+$/.test(id)) return;
  const el = document.getElementById(id);
  if (!el) return;
  for (let d = el.closest('details'); d; d = d.parentElement && d.parentElement.closest('details')) d.open = true;
  el.scrollIntoView({ block: 'center' });
}
addEventListener('hashchange', revealTarget);

// Overview and pipeline pages: re-render `main` whenever something changes, unless the
// person is in the middle of something there (typing a reason, confirming a rollback).
function livePage() {
  const main = $('#main');
  const busy = () => {
    const a = document.activeElement;
    return (a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) || !!$('details.confirm[open]', main);
  };
  const refresh = coalesced(async () => {
    if (busy()) return;
    const content = await fragment('main');
    if (busy()) return;
    const focused = document.activeElement && main.contains(document.activeElement) ? document.activeElement.closest('form')?.getAttribute('action') : null;
    main.replaceChildren(content);
    if (focused) main.querySelector(`form[action="${CSS.escape(focused)}"] button`)?.focus();
  });
  let es;
  const open = () => {
    es = new EventSource('/api/events');
    es.addEventListener('change', refresh);
    // Refused (e.g. too many open views) or the server went away: try again later.
    es.onerror = () => {
      if (es.readyState === 2) setTimeout(open, 10_000);
    };
  };
  open();
  main.addEventListener('focusout', () => setTimeout(refresh, 100));
}

// Run page: the log grows in place, grouped like the server groups it; the part above
// the log is re-rendered by the server when the run changes.
function liveRun(log) {
  const ansi = classAnsi(AnsiUp);
  let next = Number(log.dataset.nextLine);
  const follow = $('[data-log="follow"]');
  const followLabel = $('[data-log="follow-label"]');
  if (followLabel) followLabel.hidden = false;
  let ours = false;
  const atEnd = () => innerHeight + scrollY >= document.documentElement.scrollHeight - 40;
  addEventListener('scroll', () => {
    if (ours) {
      ours = false;
      return;
    }
    // Scrolling up stops following, as in a terminal; back at the end resumes it.
    if (follow) follow.checked = atEnd();
  }, { passive: true });
  const toEnd = () => {
    if (!follow || !follow.checked) return;
    ours = true;
    scrollTo(0, document.documentElement.scrollHeight);
  };

  const section = (stage) => {
    const key = stage || '';
    const last = log.lastElementChild;
    if (last && last.matches('details.ls') && last.dataset.stage === key) return $('.lb', last);
    const d = document.createElement('details');
    d.className = 'ls';
    d.open = true;
    d.dataset.stage = key;
    const s = document.createElement('summary');
    s.textContent = STAGE_LABELS[key] || key;
    const lb = document.createElement('div');
    lb.className = 'lb';
    d.append(s, lb);
    log.append(d);
    return lb;
  };
  const stepOf = (lb, id) => {
    for (const d of lb.children) if (d.matches('details.step') && d.dataset.step === id) return d;
    const d = document.createElement('details');
    d.className = 'step';
    d.open = true;
    d.dataset.step = id;
    const s = document.createElement('summary');
    const n = document.createElement('span');
    n.className = 'step-n';
    n.textContent = `#${id}`;
    const title = document.createElement('span');
    title.className = 'step-title';
    const chip = document.createElement('span');
    chip.className = 'step-st step-running';
    chip.textContent = '…';
    s.append(n, ' ', title, ' ', chip);
    d.append(s);
    lb.append(d);
    return d;
  };
  let lines = log.querySelectorAll('.l').length;
  // A blank line right after a step's line belongs to that step (as the server groups it).
  let lastStep = null;
  const append = (stage, text) => {
    $('[data-empty]', log)?.remove();
    const lb = section(stage);
    const parts = text.split('\n');
    if (parts[parts.length - 1] === '') parts.pop();
    for (const line of parts) {
      const n = next++;
      const div = document.createElement('div');
      div.className = 'l';
      div.id = `L${n}`;
      const a = document.createElement('a');
      a.className = 'n';
      a.href = `#L${n}`;
      a.textContent = String(n);
      a.setAttribute('aria-label', `line ${n}`);
      const t = document.createElement('span');
      t.className = 't';
      // ansi_up escapes all text; the markup it adds is spans with our classes only.
      t.innerHTML = ansi.ansi_to_html(line);
      div.append(a, t);
      const s = stepLine(line);
      if (!s) {
        (line === '' && lastStep && lastStep.parentElement === lb ? lastStep : lb).append(div);
        lastStep = null;
      } else {
        const step = stepOf(lb, s.step);
        if (s.kind === 'title' && !step.dataset.titled) {
          $('.step-title', step).textContent = stripAnsi(s.text);
          step.dataset.titled = '1';
        }
        if (s.kind === 'status') {
          const chip = $('.step-st', step);
          chip.className = `step-st step-${s.status}`;
          chip.textContent = s.status === 'error' ? 'ERROR' : s.text;
          chip.title = s.text;
        }
        step.append(div);
        lastStep = step;
      }
      lines++;
    }
    // A browser tab is not an archive: past 50,000 lines the oldest go (Raw has them all).
    if (lines > 50_000) {
      const all = log.querySelectorAll('.l');
      for (let i = 0; i < 10_000; i++) all[i].remove();
      lines -= 10_000;
    }
    toEnd();
  };

  const refreshHead = coalesced(async () => {
    const content = await fragment('head');
    const head = content.querySelector('#runhead');
    if (head) $('#runhead').replaceWith(head);
  });
  const es = new EventSource(`/api/runs/${encodeURIComponent(log.dataset.run)}/events?after=${Number(log.dataset.after)}`);
  es.addEventListener('log', (e) => {
    const d = JSON.parse(e.data);
    append(d.stage, d.text);
  });
  es.addEventListener('run', refreshHead);
  es.addEventListener('end', () => {
    es.close();
    delete log.dataset.live;
    if (followLabel) followLabel.hidden = true;
    refreshHead();
  });
  es.addEventListener('gone', () => {
    es.close();
    location.reload();
  });
  // The browser gave up on the stream (refused, or a proxy in the way): reload rather
  // than silently stop following.
  es.onerror = () => {
    if (es.readyState === 2) setTimeout(() => location.reload(), 5000);
  };
  toEnd();
}

function logTools() {
  for (const b of document.querySelectorAll('button[data-log]')) {
    b.hidden = false;
    b.addEventListener('click', () => {
      const open = b.dataset.log === 'expand';
      for (const d of document.querySelectorAll('#log details')) d.open = open;
    });
  }
}

const log = $('#log');
if (log) {
  logTools();
  if (log.dataset.live) liveRun(log);
  revealTarget();
}
if (document.body.dataset.live === 'page') livePage();
