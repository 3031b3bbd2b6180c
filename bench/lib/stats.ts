// Small statistics helpers shared by every scenario. Nothing here asserts a limit:
// the benchmarks report figures next to a baseline measured in the same run.

/** Sorted copy (numbers only). */
export function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/**
 * The q-th quantile (0..1) with linear interpolation between closest ranks (the
 * "type 7" definition, as numpy and R use by default). NaN for no samples.
 */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const s = sorted(values);
  const pos = (s.length - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export const median = (values: readonly number[]): number => quantile(values, 0.5);
export const p50 = (values: readonly number[]): number => quantile(values, 0.5);
export const p99 = (values: readonly number[]): number => quantile(values, 0.99);

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

export function stdev(values: readonly number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((a, b) => a + (b - m) ** 2, 0) / (values.length - 1));
}

/** deployer / baseline; null when either side is missing or the baseline is 0. */
export function ratio(deployer: number | null | undefined, baseline: number | null | undefined): number | null {
  if (deployer == null || baseline == null || !Number.isFinite(deployer) || !Number.isFinite(baseline) || baseline === 0) return null;
  return deployer / baseline;
}

/** Least-squares line through (x, y): slope, intercept, and the stdev of the residuals. */
export function linearFit(xs: readonly number[], ys: readonly number[]): { slope: number; intercept: number; residualStdev: number } {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return { slope: 0, intercept: ys[0] ?? 0, residualStdev: 0 };
  const mx = mean(xs.slice(0, n));
  const my = mean(ys.slice(0, n));
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  const slope = den === 0 ? 0 : num / den;
  const intercept = my - slope * mx;
  const residuals = xs.slice(0, n).map((x, i) => ys[i]! - (intercept + slope * x));
  return { slope, intercept, residualStdev: stdev(residuals) };
}

/**
 * Runs `pairs` rounds of A then B (A/B/A/B...), so that drift of the machine (caches,
 * other load, thermal) hits both sides alike. `warmup` extra rounds run first and are
 * not returned. Bounded in count and, through `deadline` (epoch ms), in time: when the
 * deadline passes, the rounds completed so far are returned (at least one is required).
 */
export async function interleave<A, B>(opts: {
  pairs: number;
  warmup?: number;
  deadline?: number;
  a: (round: number) => Promise<A>;
  b: (round: number) => Promise<B>;
  onRound?: (round: number, a: A, b: B) => void;
}): Promise<{ a: A[]; b: B[]; truncated: boolean }> {
  const a: A[] = [];
  const b: B[] = [];
  const warmup = opts.warmup ?? 0;
  let truncated = false;
  for (let i = 0; i < warmup + opts.pairs; i++) {
    if (opts.deadline !== undefined && Date.now() > opts.deadline && a.length > 0) {
      truncated = true;
      break;
    }
    const ra = await opts.a(i - warmup);
    const rb = await opts.b(i - warmup);
    if (i >= warmup) {
      a.push(ra);
      b.push(rb);
      opts.onRound?.(i - warmup, ra, rb);
    }
  }
  if (a.length === 0) throw new Error('no measured round completed before the deadline');
  return { a, b, truncated };
}

/** Total length of the union of [start, end] intervals, clipped to [from, to]. */
export function unionLength(intervals: readonly { start: number; end: number }[], from = -Infinity, to = Infinity): number {
  const clipped = intervals
    .map((i) => ({ start: Math.max(i.start, from), end: Math.min(i.end, to) }))
    .filter((i) => i.end > i.start)
    .sort((x, y) => x.start - y.start);
  let total = 0;
  let curStart = Number.NaN;
  let curEnd = Number.NaN;
  for (const i of clipped) {
    if (Number.isNaN(curStart) || i.start > curEnd) {
      if (!Number.isNaN(curStart)) total += curEnd - curStart;
      curStart = i.start;
      curEnd = i.end;
    } else if (i.end > curEnd) {
      curEnd = i.end;
    }
  }
  if (!Number.isNaN(curStart)) total += curEnd - curStart;
  return total;
}
