import { isTerminal, type RunStatus } from '../../src/pipeline/states.ts';
import { AUTH } from './config.ts';

/** Polls the real API until the run reaches a terminal state, and returns it. */
export async function waitForRun(baseUrl: string, id: string, timeoutMs = 150_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < deadline) {
    const res = await fetch(`${baseUrl}/api/runs/${id}`, AUTH);
    if (res.ok) {
      last = await res.json();
      if (isTerminal(last.status as RunStatus)) return last;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`run ${id} not finished after ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

export async function runLog(baseUrl: string, id: string): Promise<string> {
  return (await fetch(`${baseUrl}/api/runs/${id}/log`, AUTH)).text();
}
