/**
 * Docker image names, following the distribution reference grammar closely enough to
 * reject what the daemon would reject, and to know which registry a name lives in.
 */
const component = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const hostPart = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$/;
const tagPattern = /^[\w][\w.-]{0,127}$/;

export interface ImageName {
  /** Registry host as used for credentials, e.g. "127.0.0.1:5000" or "docker.io". */
  registry: string;
  /** The name exactly as configured, without tag or digest. */
  repository: string;
}

/** Returns an error text, or the parsed name. Tags and digests are not allowed here. */
export function parseImageName(name: string): ImageName | string {
  if (name.includes('@')) return 'must not contain a digest (the deployer pins digests itself)';
  const parts = name.split('/');
  let registry = 'docker.io';
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!hostPart.test(first)) return `invalid registry host "${first}"`;
    registry = first;
    parts.shift();
  }
  const last = parts[parts.length - 1] ?? '';
  if (last.includes(':')) return 'must not contain a tag (set "tag" instead)';
  if (parts.length === 0 || parts.some((p) => !component.test(p))) {
    return 'must be a repository name like "registry.example.org/team/site" (lowercase letters, digits, separators . _ -)';
  }
  if (name.length > 255) return 'is longer than 255 characters';
  return { registry, repository: name };
}

export function isValidTag(tag: string): boolean {
  return tagPattern.test(tag);
}
