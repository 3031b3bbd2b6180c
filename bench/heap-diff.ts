// node --expose-gc bench/heap-diff.ts [WARM_RUNS] [RUNS]
//
// What the deployer's heap keeps per run. A deployer (HTTP + worker, in this process)
// does WARM_RUNS pushes of a small site (default 40), writes a heap snapshot, does RUNS
// more (default 200), writes another, then lists the objects that exist in the second
// snapshot and not the first (V8 keeps object ids stable across snapshots of one
// process), grouped by kind, with the retainer chain of a few. A per-run leak shows as
// a group whose count is a multiple of RUNS; JIT code and late-loaded modules do not
// grow with the number of runs.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { startDaemon } from '../src/daemon.ts';
import { testConfig } from '../test/helpers/config.ts';
import { deliver, pushPayload } from '../test/helpers/github.ts';
import { waitForRun } from '../test/helpers/runs.ts';
import { createWorld, disposeQueues } from '../test/helpers/world.ts';
import { siteFiles } from '../test/support/site.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const warm = Number(process.argv[2] ?? 40);
const runs = Number(process.argv[3] ?? 200);
const dir = await mkdtemp(join(tmpdir(), 'heap-diff-'));
const world = await createWorld({ name: 'heap-diff' });
const config = testConfig({ registry: world.registryConfig, pipelines: [{ name: 'site', repo: 'acme/heap', url: world.repo.url, image: world.image, services: [] }] });
const daemon = await startDaemon(config, { http: true, worker: true, port: 0 });
const pushes = async (count: number, tag: string) => {
  for (let i = 0; i < count; i++) {
    const sha = await world.repo.commit(siteFiles(`${tag} ${i}\n`), `${tag} ${i}`);
    const res = await deliver(daemon.url!, pushPayload('acme/heap', 'main', sha));
    const run = await waitForRun(daemon.url!, res.body.runs[0]);
    if (run.status !== 'succeeded') console.log(`run ${run.id} ${run.status}: ${run.error}`);
  }
};
const settle = async () => {
  await new Promise((r) => setTimeout(r, 2000));
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1048576;
};
try {
  await pushes(warm, 'warm');
  const heapA = await settle();
  const fileA = writeHeapSnapshot(join(dir, 'a.heapsnapshot'));
  await pushes(runs, 'measure');
  const heapB = await settle();
  const fileB = writeHeapSnapshot(join(dir, 'b.heapsnapshot'));
  await daemon.close();
  console.log(`heap used after GC: ${heapA.toFixed(2)} MiB after ${warm} runs → ${heapB.toFixed(2)} MiB after ${runs} more (${(((heapB - heapA) * 1048576) / runs / 1024).toFixed(2)} KiB per run)`);
  report(JSON.parse(await readFile(fileA, 'utf8')), JSON.parse(await readFile(fileB, 'utf8')), runs);
} finally {
  await daemon.close().catch(() => undefined);
  await disposeQueues(config);
  await world.dispose();
  await rm(dir, { recursive: true, force: true });
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

function report(a: Snapshot, b: Snapshot, runs: number): void {
  const nf = b.snapshot.meta.node_fields;
  const N = nf.length;
  const [iId, iType, iName, iSize, iEdges] = ['id', 'type', 'name', 'self_size', 'edge_count'].map((k) => nf.indexOf(k)) as [number, number, number, number, number];
  const types = b.snapshot.meta.node_types[0];
  const before = new Set<number>();
  for (let i = 0; i < a.nodes.length; i += N) before.add(a.nodes[i + iId]!);
  const kind = (n: number) => {
    const t = types[b.nodes[n * N + iType]!]!;
    return t.includes('string') ? t : `${t}:${String(b.strings[b.nodes[n * N + iName]!]).slice(0, 70)}`;
  };
  const groups = new Map<string, { count: number; bytes: number; sample: number[] }>();
  const count = b.nodes.length / N;
  for (let n = 0; n < count; n++) {
    if (before.has(b.nodes[n * N + iId]!)) continue;
    const k = kind(n);
    const g = groups.get(k) ?? { count: 0, bytes: 0, sample: [] };
    g.count++;
    g.bytes += b.nodes[n * N + iSize]!;
    if (g.sample.length < 2 && g.count % 37 === 1) g.sample.push(n);
    groups.set(k, g);
  }
  const all = [...groups.values()];
  console.log(`objects new since the first snapshot and still alive: ${all.reduce((s, g) => s + g.count, 0)}, ${(all.reduce((s, g) => s + g.bytes, 0) / 1024).toFixed(0)} KiB`);
  const top = [...groups.entries()].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, 25);
  for (const [k, g] of top) console.log(`${(g.bytes / 1024).toFixed(1).padStart(9)} KiB ${String(g.count).padStart(7)} (${(g.count / runs).toFixed(2)}/run)  ${k}`);

  // Retainers: reverse the edges once, then walk up from a sample of each big group.
  const ef = b.snapshot.meta.edge_fields;
  const E = ef.length;
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((k) => ef.indexOf(k)) as [number, number, number];
  const etypes = b.snapshot.meta.edge_types[0];
  const parents: { from: number; edge: number }[][] = Array.from({ length: count }, () => []);
  for (let n = 0, e = 0; n < count; n++) {
    for (let k = 0; k < b.nodes[n * N + iEdges]!; k++, e += E) {
      if (etypes[b.edges[e + eType]!] !== 'weak') parents[b.edges[e + eTo]! / N]!.push({ from: n, edge: e });
    }
  }
  const edgeName = (e: number) => {
    const t = etypes[b.edges[e + eType]!];
    return t === 'element' || t === 'hidden' ? `[${b.edges[e + eName]}]` : String(b.strings[b.edges[e + eName]!]);
  };
  for (const [k, g] of top.filter(([k]) => !k.startsWith('code') && !k.startsWith('hidden')).slice(0, 4)) {
    console.log(`\nretained by (${k}):`);
    for (const start of g.sample.slice(0, 1)) {
      let cur = start;
      const seen = new Set([cur]);
      for (let d = 0; d < 8; d++) {
        const p = parents[cur]!.find((x) => !seen.has(x.from));
        if (!p) break;
        console.log(`  <-${edgeName(p.edge)}- ${kind(p.from)}`);
        seen.add((cur = p.from));
      }
    }
  }
}
