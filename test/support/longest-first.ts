// Integration files run two at a time; the suite ends when the slower lane ends. Vitest
// orders files by the durations it cached on the previous run, but CI starts from a
// clean clone with no cache, where it falls back to file size — which put two of the
// longest files last (measured: 1,156 s of wall time for 1,638 s of files). Starting
// the longest files first lets the short ones fill the gaps.
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Seconds each file took in a full run (loaded machine; only the order matters). */
const MEASURED: Record<string, number> = {
  'test/integration/buildkit-compat.test.ts': 435,
  'test/integration/selfhost.test.ts': 520, // ~360 s with base images cached (self-deploy included); ~3 min more cold
  'test/integration/crash.test.ts': 198,
  'test/integration/bench-smoke.test.ts': 196,
  'test/integration/reporting-e2e.test.ts': 160,
  'test/integration/verify-pipeline.test.ts': 150,
  'test/integration/rollout.test.ts': 103,
  'test/integration/verify-fleet-crash.test.ts': 100,
  'test/support-smoke.test.ts': 79,
  'test/integration/verify-previous-good.test.ts': 75,
  'test/integration/console-e2e.test.ts': 71,
  'test/integration/rollback.test.ts': 66,
  'test/integration/deploy-e2e.test.ts': 65,
  'test/integration/verify-edge.test.ts': 60,
  'test/hostile/replay.test.ts': 55,
  'test/integration/two-deployers.test.ts': 53,
  'test/integration/reports.test.ts': 52,
};

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = process.cwd();
    const weight = (f: TestSpecification) => MEASURED[f.moduleId.slice(root.length + 1)] ?? 0;
    // Stable: files without a figure keep the order Vitest gave them.
    return base.map((f, i) => ({ f, i })).sort((a, b) => weight(b.f) - weight(a.f) || a.i - b.i).map(({ f }) => f);
  }
}
