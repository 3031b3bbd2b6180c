import type Docker from 'dockerode';
import type { IncomingMessage } from 'node:http';

/** What an engine's `GET /_ping` says about itself (its headers). */
export interface EnginePing {
  apiVersion: string | undefined;
  osType: string | undefined;
  /** "2" (BuildKit), "1" (classic recommended), or undefined (no advice: engines before 23 unless configured). */
  builderVersion: string | undefined;
}

/**
 * Reads the ping headers. dockerode's `ping()` gives only the body, so this dials
 * `/_ping` as a stream to see the response headers. No API version is put in the path:
 * an unversioned request is served at the engine's own API version.
 */
export function pingEngine(docker: Docker, signal?: AbortSignal): Promise<EnginePing> {
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      { path: '/_ping', method: 'GET', isStream: true, abortSignal: signal, statusCodes: { 200: true, 500: 'server error' } } as never,
      (err: unknown, res: unknown) => {
        if (err) return reject(err);
        const r = res as IncomingMessage;
        r.resume();
        const h = (name: string) => {
          const v = r.headers[name];
          return Array.isArray(v) ? v[0] : v;
        };
        resolve({ apiVersion: h('api-version'), osType: h('ostype'), builderVersion: h('builder-version') });
      },
    );
  });
}

/**
 * Which builder to use. The Engine API has offered BuildKit (`POST /build?version=2`)
 * on Linux since API 1.39 (Docker 18.09); an engine that advertises `Builder-Version: 1`
 * recommends the classic builder (its operator set `"features": {"buildkit": false}`,
 * or it is a Windows engine), and we follow that advice.
 */
export function chooseBuilder(wanted: 'buildkit' | 'classic', ping: EnginePing): { builder: 'buildkit' | 'classic'; reason?: string } {
  if (wanted === 'classic') return { builder: 'classic' };
  if (ping.osType && ping.osType !== 'linux') return { builder: 'classic', reason: `it is a ${ping.osType} engine` };
  if (ping.builderVersion === '1') return { builder: 'classic', reason: 'it advertises Builder-Version 1 (BuildKit turned off in its daemon.json)' };
  if (ping.apiVersion && compareApi(ping.apiVersion, '1.39') < 0) return { builder: 'classic', reason: `its API version ${ping.apiVersion} predates BuildKit (1.39)` };
  return { builder: 'buildkit' };
}

function compareApi(a: string, b: string): number {
  const [am = 0, an = 0] = a.split('.').map(Number);
  const [bm = 0, bn = 0] = b.split('.').map(Number);
  return am - bm || an - bn;
}
