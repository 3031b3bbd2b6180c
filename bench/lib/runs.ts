// Triggering a run over real HTTP and waiting for its end through the JSON API.
import { isTerminal, type RunStatus } from '../../src/pipeline/states.ts';

export interface ApiRun {
  id: string;
  status: RunStatus;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  stages: { name: string; status: string; startedAt: string | null; finishedAt: string | null; error: string | null }[];
  image: { ref: string; digest: string } | null;
}

/** POSTs a webhook delivery and returns the first run id of its 202. */
export async function postPush(baseUrl: string, body: string, headers: Record<string, string>): Promise<string> {
  const res = await fetch(`${baseUrl}/webhooks/github`, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) });
  const json = (await res.json().catch(() => ({}))) as { runs?: string[] };
  const id = json.runs?.[0];
  if (res.status !== 202 || !id) throw new Error(`webhook answered ${res.status}: ${JSON.stringify(json)}`);
  return id;
}

/** Polls GET /api/runs/:id (as `token`: the API needs one) every `everyMs` until the run is terminal; bounded by `timeoutMs`. */
export async function waitForRun(baseUrl: string, token: string, id: string, timeoutMs: number, everyMs = 50): Promise<ApiRun> {
  const deadline = Date.now() + timeoutMs;
  let last: ApiRun | undefined;
  while (Date.now() < deadline) {
    const res = await fetch(`${baseUrl}/api/runs/${id}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
    if (res.ok) {
      last = (await res.json()) as ApiRun;
      if (isTerminal(last.status)) return last;
    } else {
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`run ${id} not finished after ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

export async function pushAndWait(baseUrl: string, token: string, body: string, headers: Record<string, string>, timeoutMs: number, everyMs = 50): Promise<ApiRun> {
  return waitForRun(baseUrl, token, await postPush(baseUrl, body, headers), timeoutMs, everyMs);
}
