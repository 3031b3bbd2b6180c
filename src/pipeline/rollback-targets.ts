/**
 * Rollback targets that still exist (issue #15, item 4): the images of a pipeline's
 * last N deployments are kept from the deployer's own pruning, and their manifests are
 * checked in the registry, so a rollback to one that is gone is refused (409) before
 * the service is touched. This file holds the port and the pure decisions; the
 * registry adapter is src/registry/manifests.ts.
 */

export interface ManifestRef {
  /** Registry host as configured ("127.0.0.1:5000", "ghcr.io", "docker.io"). */
  registry: string;
  /** Repository inside the registry, without host, tag or digest ("team/site"). */
  repository: string;
  /** "sha256:…" */
  digest: string;
}

export type ManifestState =
  /** The registry has it: a rollback to it can pull it. */
  | { state: 'present' }
  /** The registry answered that it does not have it (404). */
  | { state: 'missing'; detail: string }
  /** Could not tell: registry unreachable, 5xx, credentials refused. Never a reason to refuse a rollback. */
  | { state: 'unknown'; detail: string };

export interface ManifestCheckPort {
  check(ref: ManifestRef): Promise<ManifestState>;
}

/** A deployment as the store records it, reduced to what target protection needs. */
export interface DeploymentLike {
  id: number | string;
  image: string;
  digest: string;
  deployedAt: string;
}

/**
 * The images (pinned refs and digests) of the last `n` distinct deployments, newest
 * first: what pruning must keep and what the registry check watches. A redeploy of the
 * same digest counts once.
 */
export function protectedTargets<T extends DeploymentLike>(deployments: T[], n: number): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const d of [...deployments].sort((a, b) => b.deployedAt.localeCompare(a.deployedAt))) {
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    out.push(d);
    if (out.length >= n) break;
  }
  return out;
}

/**
 * Splits a pinned image reference ("host:5000/team/site:tag@sha256:…") into what a
 * registry request needs. Docker Hub names get their implied host and `library/`.
 */
export function manifestRefOf(image: string): ManifestRef | undefined {
  const at = image.indexOf('@');
  if (at < 0) return undefined;
  const digest = image.slice(at + 1);
  let name = image.slice(0, at);
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon > slash) name = name.slice(0, colon); // drop the tag
  const parts = name.split('/');
  const first = parts[0] ?? '';
  let registry = 'docker.io';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
  }
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  return { registry, repository: parts.join('/'), digest };
}

/** A rollback target's last known state in the registry (the watcher's answer). */
export type TargetState = ManifestState & { image: string; checkedAt: string };

/** What the scheduler and the pages need of the watcher (src/verify/targets.ts). */
export interface RollbackTargetChecks {
  /** Asks the registry now (a rollback never trusts the periodic check's cache). */
  checkNow(image: string): Promise<TargetState>;
  /** The last periodic answer for `image`, if it was checked. */
  statusOf(image: string): TargetState | undefined;
}
