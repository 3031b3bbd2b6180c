// The local Docker engine as a swarm *worker* node's engine looks: it builds, tags and
// pushes like any engine (BuildKit sessions included), but it is no manager — /info says so, and every swarm
// service call is refused with the daemon's own 503 — because only one engine (a
// manager) runs here. A unix-socket HTTP proxy in front of the real socket; streamed
// bodies (build output, pushes) pass through untouched.
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface WorkerNodeEngine {
  /** unix:///… for a config's docker.host. */
  host: string;
  /** Swarm service calls it refused (what a worker that tried to deploy would have sent). */
  refused(): string[];
  stop(): Promise<void>;
}

const NOT_A_MANAGER = 'This node is not a swarm manager. Worker nodes can\'t be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.';

export async function startWorkerNodeEngine(target = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'): Promise<WorkerNodeEngine> {
  if (!target.startsWith('unix://')) throw new Error(`needs a unix socket DOCKER_HOST, not ${target}`);
  const upstream = target.slice('unix://'.length);
  const dir = await mkdtemp(join(tmpdir(), 'worker-engine-'));
  const socket = join(dir, 'docker.sock');
  const refused: string[] = [];
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!.replace(/^\/v[\d.]+/, '');
    if (/^\/(services|nodes|tasks|swarm)(\/|$)/.test(path)) {
      refused.push(`${req.method} ${path}`);
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ message: NOT_A_MANAGER }));
      return;
    }
    const up = http.request({ socketPath: upstream, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      if (req.method === 'GET' && path === '/info') {
        // Buffered and rewritten: the one answer that differs on a worker node.
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const info = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { Swarm?: Record<string, unknown> };
          info.Swarm = { ...info.Swarm, ControlAvailable: false, Managers: 1, RemoteManagers: [] };
          const body = JSON.stringify(info);
          res.writeHead(upRes.statusCode ?? 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
        });
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders);
      upRes.pipe(res);
    });
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: `worker engine proxy: ${err.message}` }));
    });
    req.pipe(up);
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
  });
  // BuildKit builds open a session first (POST /session, `Upgrade: h2c`): the hijacked
  // connection is spliced through as raw bytes, as a worker node's engine would take it.
  const spliced = new Set<net.Socket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    spliced.add(socket);
    socket.on('close', () => spliced.delete(socket));
    const up = net.connect(upstream, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) up.write(head);
      socket.pipe(up).pipe(socket);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    host: `unix://${socket}`,
    refused: () => [...refused],
    async stop() {
      server.closeAllConnections();
      for (const socket of spliced) socket.destroy(); // hijacked: no longer the HTTP server's to close
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
