// The engine's BuildKit cache, scoped to what one test built: "a fresh build host"
// without touching anyone else's cache (the engine is shared; never prune globally).
import Docker from 'dockerode';

const docker = new Docker(); // honours DOCKER_HOST=unix://…

interface CacheRecord {
  ID: string;
  Description: string;
  Parents?: string[] | null;
  // Docker 26 sends the parents under a misspelt key (a leading space).
  ' Parents'?: string[] | null;
}

function call<T>(opts: Record<string, unknown>): Promise<T> {
  return new Promise((resolve, reject) =>
    docker.modem.dial({ statusCodes: { 200: true, 500: 'server error' }, ...opts } as never, (err: unknown, res: unknown) => (err ? reject(err) : resolve(res as T))),
  );
}

async function records(): Promise<CacheRecord[]> {
  const df = await call<{ BuildCache?: CacheRecord[] | null }>({ path: '/system/df?', method: 'GET', options: { type: 'build-cache' } });
  return df.BuildCache ?? [];
}

/**
 * Removes the build cache records whose description contains `marker` (a nonce in the
 * steps a test wants rebuilt) and every record built on top of them, children first:
 * the engine keeps a record while another one names it as parent. Afterwards those
 * steps have to run again, unless a cache is imported. Returns how many were removed.
 */
export async function forgetBuildCache(marker: string): Promise<number> {
  let removed = 0;
  for (let round = 0; round < 20; round++) {
    const all = await records();
    const parents = (r: CacheRecord) => r.Parents ?? r[' Parents'] ?? [];
    const mine = new Set(all.filter((r) => r.Description.includes(marker)).map((r) => r.ID));
    for (let grew = true; grew; ) {
      grew = false;
      for (const r of all) {
        if (!mine.has(r.ID) && parents(r).some((p) => mine.has(p))) {
          mine.add(r.ID);
          grew = true;
        }
      }
    }
    if (mine.size === 0) return removed;
    // One prune for all of them: the engine takes one value per filter, but matches `id`
    // as a regular expression (moby's toBuildkitPruneInfo: "id~="), and BuildKit prunes
    // children before their parents within a call; a record still referenced is left for
    // the next round. One call per record took minutes on a busy engine.
    const res = await call<{ CachesDeleted?: string[] | null }>({ path: '/build/prune?', method: 'POST', options: { filters: JSON.stringify({ id: { [`^(${[...mine].join('|')})$`]: true } }) } });
    removed += res.CachesDeleted?.length ?? 0;
  }
  const left = (await records()).filter((r) => r.Description.includes(marker)).map((r) => r.Description);
  throw new Error(`build cache records matching ${marker} are still there after 20 rounds (an image still uses them?): ${left.join('; ')}`);
}

/** Untags every tag of the images of `repository` (the build host forgets the image). */
export async function removeRepositoryImages(repository: string): Promise<void> {
  // Matched here rather than with the `reference` filter, which trips over a registry port.
  for (const img of await docker.listImages()) {
    const tags = (img.RepoTags ?? []).filter((t) => t.startsWith(`${repository}:`));
    const digests = (img.RepoDigests ?? []).filter((d) => d.startsWith(`${repository}@`));
    if (tags.length === 0 && digests.length === 0) continue;
    for (const tag of tags) await docker.getImage(tag).remove().catch(() => undefined);
    // Still there (only a digest reference left): by id, when nothing else names it.
    if ((img.RepoTags ?? []).length === tags.length) await docker.getImage(img.Id).remove().catch(() => undefined);
  }
}
