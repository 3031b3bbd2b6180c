import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type Docker from 'dockerode';
import type { Secret } from '../../lib/secret.ts';
import { messageCodec } from './proto.ts';

/** Credentials for one registry host, as BuildKit asks for them. */
export type CredentialsLookup = (host: string) => { username: string; secret: string } | undefined;

export interface SessionOptions {
  /** Build secrets by id, served to `RUN --mount=type=secret,id=…`. */
  secrets: ReadonlyMap<string, Secret>;
  /** Registry credentials by host (FROM images, cache imports). */
  credentials: CredentialsLookup;
  /** Told which secret ids and registry hosts BuildKit asked for (never the values). */
  onRequest?: (what: { kind: 'secret' | 'credentials'; name: string; found: boolean }) => void;
}

export interface BuildSession {
  /** Passed as the `session` parameter of POST /build. */
  id: string;
  close(): void;
}

const AUTH_CREDENTIALS = '/moby.filesync.v1.Auth/Credentials';
const SECRETS_GET = '/moby.buildkit.secrets.v1.Secrets/GetSecret';
const HEALTH_CHECK = '/grpc.health.v1.Health/Check';

function unary(path: string, requestType: string, responseType: string): grpc.MethodDefinition<Record<string, any>, Record<string, unknown>> {
  const codec = messageCodec(requestType, responseType);
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: () => Buffer.alloc(0), // we only serve: never called
    requestDeserialize: codec.decodeRequest,
    responseSerialize: codec.encodeResponse,
    responseDeserialize: () => ({}),
  };
}

const AuthService = { Credentials: unary(AUTH_CREDENTIALS, 'moby.filesync.v1.CredentialsRequest', 'moby.filesync.v1.CredentialsResponse') };
const SecretsService = { GetSecret: unary(SECRETS_GET, 'moby.buildkit.secrets.v1.GetSecretRequest', 'moby.buildkit.secrets.v1.GetSecretResponse') };
const HealthService = { Check: unary(HEALTH_CHECK, 'grpc.health.v1.HealthCheckRequest', 'grpc.health.v1.HealthCheckResponse') };

/**
 * Opens a BuildKit session on the engine: `POST /session` upgraded to h2c, on which the
 * engine is the gRPC *client* and we serve. The engine calls back for registry
 * credentials (per host), build secrets (per id) and a health check. Methods we do not
 * serve (token fetching, file sync, ssh) answer UNIMPLEMENTED, which BuildKit treats as
 * "use basic credentials" / "not provided".
 */
export async function openSession(docker: Docker, opts: SessionOptions): Promise<BuildSession> {
  const id = randomUUID();
  const socket = await new Promise<Duplex>((resolve, reject) => {
    docker.modem.dial(
      {
        path: '/session',
        method: 'POST',
        hijack: true,
        headers: {
          Upgrade: 'h2c',
          'X-Docker-Expose-Session-Uuid': id,
          'X-Docker-Expose-Session-Name': 'deployer',
          'X-Docker-Expose-Session-Sharedkey': id,
          // BuildKit asks a session only for what it says it serves.
          'X-Docker-Expose-Session-Grpc-Method': [AUTH_CREDENTIALS, SECRETS_GET, HEALTH_CHECK],
        },
        statusCodes: { 101: true, 200: true, 400: 'bad request', 500: 'server error' },
      } as never,
      (err: unknown, sock: unknown) => (err ? reject(err) : resolve(sock as Duplex)),
    );
  });

  // The engine may drop the session at any time (build over, engine restarting): that
  // must never become an unhandled 'error' event in the deployer.
  socket.on('error', () => undefined);
  const server = new grpc.Server();
  server.addService(AuthService, {
    Credentials(call: grpc.ServerUnaryCall<{ Host: string }, unknown>, callback: grpc.sendUnaryData<Record<string, unknown>>) {
      const host = call.request.Host;
      const found = opts.credentials(host);
      opts.onRequest?.({ kind: 'credentials', name: host, found: found !== undefined });
      // An empty answer means anonymous access: the registry then says whether that is enough.
      callback(null, found ? { Username: found.username, Secret: found.secret } : {});
    },
  });
  server.addService(SecretsService, {
    GetSecret(call: grpc.ServerUnaryCall<{ ID: string }, unknown>, callback: grpc.sendUnaryData<Record<string, unknown>>) {
      const secret = opts.secrets.get(call.request.ID);
      opts.onRequest?.({ kind: 'secret', name: call.request.ID, found: secret !== undefined });
      // NOT_FOUND is what BuildKit turns into "secret ID not found" (or skips, if not required).
      if (!secret) return callback({ code: grpc.status.NOT_FOUND, details: `secret ${call.request.ID} not configured` });
      callback(null, { data: Buffer.from(secret.reveal(), 'utf8') });
    },
  });
  server.addService(HealthService, {
    Check(_call: unknown, callback: grpc.sendUnaryData<Record<string, unknown>>) {
      callback(null, { status: 1 /* SERVING */ });
    },
  });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  injector.injectConnection(socket);

  let closed = false;
  return {
    id,
    close() {
      if (closed) return;
      closed = true;
      injector.destroy();
      server.forceShutdown();
      socket.destroy();
    },
  };
}
