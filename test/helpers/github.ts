import { createHmac, randomUUID } from 'node:crypto';
import examples from '@octokit/webhooks-examples/api.github.com/index.json' with { type: 'json' };
import { WEBHOOK_SECRET } from './config.ts';

type Example = { name: string; examples: Record<string, any>[] };
const all = examples as Example[];

/** A real GitHub payload from @octokit/webhooks-examples, deep-copied. */
export function example(event: string, pick: (p: Record<string, any>) => boolean = () => true): Record<string, any> {
  const found = all.find((e) => e.name === event)?.examples.find(pick);
  if (!found) throw new Error(`no example for ${event}`);
  return structuredClone(found);
}

/** A branch push of `sha` to `repo`, built from GitHub's own example payload. */
export function pushPayload(repo: string, branch: string, sha: string, message = 'a commit'): Record<string, any> {
  const p = example('push', (x) => String(x.ref).startsWith('refs/heads/') && !x.deleted);
  p.ref = `refs/heads/${branch}`;
  p.after = sha;
  p.repository.full_name = repo;
  p.repository.name = repo.split('/')[1];
  p.head_commit = { ...p.head_commit, id: sha, message };
  return p;
}

export function sign(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export interface DeliverOptions {
  event?: string;
  delivery?: string;
  secret?: string;
  headers?: Record<string, string | undefined>;
  raw?: string;
}

/** POSTs a signed delivery over real HTTP, as GitHub does. */
export async function deliver(baseUrl: string, payload: unknown, opts: DeliverOptions = {}): Promise<{ status: number; body: any }> {
  const body = opts.raw ?? JSON.stringify(payload);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/test',
    'x-github-event': opts.event ?? 'push',
    'x-github-delivery': opts.delivery ?? randomUUID(),
    'x-hub-signature-256': sign(body, opts.secret ?? WEBHOOK_SECRET),
  };
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    if (v === undefined) delete headers[k];
    else headers[k] = v;
  }
  const res = await fetch(`${baseUrl}/webhooks/github`, { method: 'POST', headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed };
}
