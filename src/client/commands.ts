import { parseArgs } from 'node:util';
import { ClientAuthError, ClientUsageError, resolveClientOptions, type ClientOptions } from '../config/client.ts';
import { ApiClient, ApiError, EXIT } from './api.ts';

/** The commands that talk to a running server (the others start one). */
export const CLIENT_COMMANDS = ['status', 'runs', 'logs', 'rebuild', 'cancel', 'rollback', 'pause', 'resume'] as const;
export type ClientCommand = (typeof CLIENT_COMMANDS)[number];

export const CLIENT_USAGE = `client commands (against a running server):
  status                              pipelines: what serves, the last run, paused / drift
  runs [PIPELINE] [--limit N]         recent runs, newest first
  logs RUN [--follow]                 a run's log; --follow waits for its end (exit 5 if it did not succeed)
  rebuild PIPELINE                    build and deploy the branch head (operator)
  cancel RUN                          stop a waiting or building run (operator)
  rollback PIPELINE [--to DEPLOYMENT] redeploy the previous (or that) deployment; pauses the pipeline (admin)
  pause PIPELINE [--reason TEXT]      hold new pushes (admin)
  resume PIPELINE                     un-pause; the newest held push runs (admin)
options: --server URL (or DEPLOYER_SERVER; default http://127.0.0.1:8090)
         --token-file FILE (or DEPLOYER_TOKEN)   --json (machine-readable output)
exit codes: 0 ok, 1 refused by the server (not found, conflict), 2 usage, 3 not allowed
            (no/wrong token, missing role), 4 server unreachable or failing, 5 followed run did not succeed
`;

export interface ClientIo {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
}

interface Run {
  id: string;
  pipeline: string;
  status: string;
  trigger: string;
  commit: string | null;
  subject: string | null;
  requestedBy: string | null;
  author: string | null;
  createdAt: string;
  finishedAt: string | null;
  error: string | null;
}

interface Pipeline {
  name: string;
  repo: string;
  branch: string;
  lastRun: { id: string; status: string; commit: string | null; trigger: string; createdAt: string } | null;
  deployed: { commit: string; digest: string; at: string; run: string } | null;
  paused: boolean;
  pause: { reason: string; by: string; at: string } | null;
  drift: { service: string }[] | null;
}

/** Runs one client command; returns the exit code. */
export async function runClient(command: ClientCommand, argv: string[], io: ClientIo): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        server: { type: 'string' },
        'token-file': { type: 'string' },
        json: { type: 'boolean' },
        follow: { type: 'boolean', short: 'f' },
        to: { type: 'string' },
        reason: { type: 'string' },
        limit: { type: 'string' },
      },
    }));
  } catch (err) {
    io.err(`deployer ${command}: ${(err as Error).message}\n\n${CLIENT_USAGE}`);
    return EXIT.usage;
  }
  const need = { status: 0, runs: -1, logs: 1, rebuild: 1, cancel: 1, rollback: 1, pause: 1, resume: 1 }[command];
  if ((need >= 0 && positionals.length !== need) || (need < 0 && positionals.length > 1)) {
    io.err(`deployer ${command}: ${need === 0 ? 'takes no arguments' : need < 0 ? 'takes at most one PIPELINE' : `needs exactly one ${command === 'logs' || command === 'cancel' ? 'RUN' : 'PIPELINE'}`}\n\n${CLIENT_USAGE}`);
    return EXIT.usage;
  }
  const allowed: Record<ClientCommand, string[]> = { status: [], runs: ['limit'], logs: ['follow'], rebuild: [], cancel: [], rollback: ['to'], pause: ['reason'], resume: [] };
  for (const k of ['follow', 'to', 'reason', 'limit']) {
    if (values[k] !== undefined && !allowed[command].includes(k)) {
      io.err(`deployer ${command}: --${k} does not apply here\n\n${CLIENT_USAGE}`);
      return EXIT.usage;
    }
  }
  const limit = values.limit === undefined ? 20 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
    io.err(`deployer runs: --limit must be 1..200\n`);
    return EXIT.usage;
  }
  let opts: ClientOptions;
  try {
    opts = resolveClientOptions(values as { server?: string; 'token-file'?: string; json?: boolean }, io.env);
  } catch (err) {
    io.err(`deployer ${command}: ${(err as Error).message}\n`);
    return err instanceof ClientAuthError ? EXIT.auth : err instanceof ClientUsageError ? EXIT.usage : EXIT.unavailable;
  }
  const api = new ApiClient(opts.server, opts.token);
  const arg = positionals[0] ?? '';
  const path = (s: string) => encodeURIComponent(s);
  const print = (json: unknown, human: string) => io.out(opts.json ? `${JSON.stringify(json, null, 2)}\n` : human);
  try {
    switch (command) {
      case 'status': {
        const pipelines = await api.get<Pipeline[]>('/api/pipelines');
        print(pipelines, table([['PIPELINE', 'SERVING', 'DEPLOYED', 'LAST RUN', 'STATUS', 'NOTES'], ...pipelines.map((p) => [
          p.name,
          p.deployed ? p.deployed.commit.slice(0, 12) : '-',
          p.deployed ? p.deployed.at.replace('T', ' ').slice(0, 16) : '-',
          p.lastRun?.id ?? '-',
          p.lastRun?.status ?? '-',
          [p.paused ? `paused (${p.pause?.reason ?? ''})` : '', p.drift?.length ? `drift: ${p.drift.map((d) => d.service).join(', ')}` : ''].filter(Boolean).join('; '),
        ])]));
        return EXIT.ok;
      }
      case 'runs': {
        const q = new URLSearchParams({ limit: String(limit) });
        if (arg) q.set('pipeline', arg);
        const { runs } = arg ? await api.get<{ runs: Run[] }>(`/api/pipelines/${path(arg)}/runs?limit=${limit}`) : await api.get<{ runs: Run[] }>(`/api/runs?${q}`);
        print(runs, table([['RUN', 'PIPELINE', 'STATUS', 'TRIGGER', 'BY', 'COMMIT', 'CREATED', 'SUBJECT'], ...runs.map((r) => [
          r.id, r.pipeline, r.status, r.trigger, r.requestedBy ?? (r.trigger === 'push' ? (r.author ?? '') : ''), r.commit?.slice(0, 12) ?? '-', r.createdAt.replace('T', ' ').slice(0, 19), (r.subject ?? '').slice(0, 60),
        ])]));
        return EXIT.ok;
      }
      case 'logs': {
        if (!values.follow) {
          if (opts.json) {
            let text = '';
            await api.log(arg, (t) => (text += t));
            io.out(`${JSON.stringify({ run: arg, log: text })}\n`);
          } else {
            await api.log(arg, io.out);
          }
          return EXIT.ok;
        }
        let status: string | undefined;
        for await (const m of api.events(arg)) {
          if (m.event === 'log') {
            const d = JSON.parse(m.data) as { stage: string | null; text: string };
            io.out(opts.json ? `${JSON.stringify({ event: 'log', seq: Number(m.id), ...d })}\n` : d.text);
          } else if (m.event === 'end') {
            status = (JSON.parse(m.data) as { status: string }).status;
          } else if (m.event === 'gone') {
            throw new ApiError(`run ${arg} was removed`, EXIT.refused);
          }
        }
        // 204 after a reconnect: the run ended while we were away; ask for its status.
        status ??= (await api.get<Run>(`/api/runs/${path(arg)}`)).status;
        if (opts.json) io.out(`${JSON.stringify({ event: 'end', status })}\n`);
        else io.err(`run ${arg} ${status}\n`);
        return status === 'succeeded' ? EXIT.ok : EXIT.runNotSucceeded;
      }
      case 'rebuild': {
        const r = await api.post<{ run: string }>(`/api/pipelines/${path(arg)}/rebuild`);
        print(r, `queued run ${r.run}: ${opts.server}/runs/${r.run}\n`);
        return EXIT.ok;
      }
      case 'cancel': {
        const r = await api.post<{ run: string; status: string }>(`/api/runs/${path(arg)}/cancel`);
        print(r, r.status === 'cancelled' ? `run ${r.run} cancelled\n` : `run ${r.run} cancelling: the worker stops it within seconds\n`);
        return EXIT.ok;
      }
      case 'rollback': {
        const r = await api.post<{ run: string }>(`/api/pipelines/${path(arg)}/rollback`, values.to ? { deployment: values.to } : {});
        print(r, `rolling back in run ${r.run} (the pipeline is paused until resumed): ${opts.server}/runs/${r.run}\n`);
        return EXIT.ok;
      }
      case 'pause': {
        const r = await api.post<Pipeline>(`/api/pipelines/${path(arg)}/pause`, values.reason ? { reason: values.reason } : {});
        print(r, `${r.name} paused: ${r.pause?.reason ?? ''}\n`);
        return EXIT.ok;
      }
      case 'resume': {
        const r = await api.post<Pipeline & { resumedRun: string | null }>(`/api/pipelines/${path(arg)}/resume`);
        print(r, `${r.name} resumed${r.resumedRun ? `; queued the waiting run ${r.resumedRun}` : ''}\n`);
        return EXIT.ok;
      }
    }
  } catch (err) {
    if (err instanceof ApiError) {
      io.err(`deployer ${command}: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}
