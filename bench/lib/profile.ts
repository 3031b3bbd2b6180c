// Reading a V8 .cpuprofile (node --cpu-prof): where did the time go?
// Self time per function and per "owner" (our src/ folder, a package, node internals).
import { readFileSync } from 'node:fs';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: CpuNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  byFunction: { name: string; where: string; selfMs: number; share: number }[];
  byOwner: { owner: string; selfMs: number; share: number }[];
}

/** Which part of the program a script URL belongs to. */
export function ownerOf(url: string): string {
  if (!url) return '(native / V8)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const src = /\/(src|bench|test)\/(.*)$/.exec(url);
  if (src) return `${src[1]}/${src[2]!.split('/').slice(0, src[1] === 'src' ? 1 : 2).join('/')}`;
  return url.replace(/^file:\/\//, '');
}

/** A profile, its nodes by id, and each node's self time in ms (from the samples). */
function loadProfile(file: string) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + (deltas[i] ?? 0) / 1000);
  return { p, byId, self };
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const { byId, self } = loadProfile(file);
  let total = 0;
  let idle = 0;
  const fn = new Map<string, { name: string; where: string; selfMs: number }>();
  const owner = new Map<string, number>();
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += ms;
    const name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') {
      if (name === '(idle)') idle += ms;
    }
    const where = n.callFrame.url ? `${n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|src|bench|test)\//, '$1/')}:${n.callFrame.lineNumber + 1}` : '';
    const key = `${name}@${where}`;
    const cur = fn.get(key) ?? { name, where, selfMs: 0 };
    cur.selfMs += ms;
    fn.set(key, cur);
    const o = name.startsWith('(') ? name : ownerOf(n.callFrame.url);
    owner.set(o, (owner.get(o) ?? 0) + ms);
  }
  const busy = total - idle;
  const share = (ms: number) => (busy > 0 ? ms / busy : 0);
  return {
    totalMs: total,
    idleMs: idle,
    byFunction: [...fn.values()]
      .filter((f) => f.name !== '(idle)')
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top)
      .map((f) => ({ ...f, share: share(f.selfMs) })),
    byOwner: [...owner.entries()]
      .filter(([o]) => o !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([o, ms]) => ({ owner: o, selfMs: ms, share: share(ms) })),
  };
}

export function renderSummary(s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)}%`;
  const out = [`profile: ${(s.totalMs / 1000).toFixed(1)} s sampled, ${((s.totalMs - s.idleMs) / 1000).toFixed(1)} s busy (shares below are of busy time)`, '', 'self time by owner:'];
  for (const o of s.byOwner) out.push(`  ${pct(o.share)}  ${(o.selfMs / 1000).toFixed(2).padStart(7)} s  ${o.owner}`);
  out.push('', 'self time by function:');
  for (const f of s.byFunction) out.push(`  ${pct(f.share)}  ${(f.selfMs / 1000).toFixed(2).padStart(7)} s  ${f.name}  ${f.where}`);
  return out.join('\n');
}

/**
 * Who calls `functionName`: its self time split by the chain of its `depth` nearest
 * callers (innermost first), heaviest chains first.
 */
export function callersOf(file: string, functionName: string, depth = 4, top = 10): { chain: string; selfMs: number }[] {
  const { p, byId, self } = loadProfile(file);
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const chains = new Map<string, number>();
  for (const [id, ms] of self) {
    if (byId.get(id)?.callFrame.functionName !== functionName) continue;
    const names: string[] = [];
    let cur = parent.get(id);
    while (cur !== undefined && names.length < depth) {
      const n = byId.get(cur)!;
      const where = n.callFrame.url ? `${ownerOf(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : '';
      names.push(`${n.callFrame.functionName || '(anonymous)'}${where ? ` (${where})` : ''}`);
      cur = parent.get(cur);
    }
    const key = names.join(' ← ');
    chains.set(key, (chains.get(key) ?? 0) + ms);
  }
  return [...chains.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([chain, selfMs]) => ({ chain, selfMs }));
}

/** Inclusive time (self + callees) of each named function, outermost occurrences only. */
export function inclusiveTimes(file: string, names: string[]): { name: string; totalMs: number; busyShare: number }[] {
  const { p, byId, self } = loadProfile(file);
  let busy = 0;
  for (const [id, ms] of self) if (byId.get(id)?.callFrame.functionName !== '(idle)') busy += ms;
  const root = p.nodes[0]!;
  const totals = new Map<string, number>(names.map((n) => [n, 0]));
  // Depth-first with the set of wanted names already on the stack.
  const walk = (id: number, open: Set<string>): void => {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    const entering = totals.has(name) && !open.has(name);
    const nextOpen = entering ? new Set([...open, name]) : open;
    const ms = self.get(id) ?? 0;
    for (const o of nextOpen) totals.set(o, totals.get(o)! + ms);
    for (const c of n.children ?? []) walk(c, nextOpen);
  };
  walk(root.id, new Set());
  return names.map((name) => ({ name, totalMs: totals.get(name)!, busyShare: busy > 0 ? totals.get(name)! / busy : 0 }));
}
