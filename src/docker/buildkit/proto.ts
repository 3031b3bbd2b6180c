import protobuf from 'protobufjs';

/**
 * The BuildKit wire messages the deployer needs, as protobuf schema text (field numbers
 * from moby/buildkit: api/services/control/control.proto, session/auth/auth.proto,
 * session/secrets/secrets.proto; grpc health.proto). Only the fields we read or write are declared;
 * protobuf skips the others when decoding.
 */
const SCHEMA = `
syntax = "proto3";

package moby.buildkit.v1;

message StatusResponse {
  repeated Vertex vertexes = 1;
  repeated VertexStatus statuses = 2;
  repeated VertexLog logs = 3;
  repeated VertexWarning warnings = 4;
}
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message Vertex {
  string digest = 1;
  repeated string inputs = 2;
  string name = 3;
  bool cached = 4;
  Timestamp started = 5;
  Timestamp completed = 6;
  string error = 7;
}
message VertexStatus {
  string ID = 1;
  string vertex = 2;
  string name = 3;
  int64 current = 4;
  int64 total = 5;
  Timestamp timestamp = 6;
  Timestamp started = 7;
  Timestamp completed = 8;
}
message VertexLog {
  string vertex = 1;
  Timestamp timestamp = 2;
  int64 stream = 3;
  bytes msg = 4;
}
message VertexWarning {
  string vertex = 1;
  int64 level = 2;
  bytes short = 3;
  repeated bytes detail = 4;
  string url = 5;
}
`;

const AUTH_SCHEMA = `
syntax = "proto3";
package moby.filesync.v1;
message CredentialsRequest { string Host = 1; }
message CredentialsResponse { string Username = 1; string Secret = 2; }
`;

const SECRETS_SCHEMA = `
syntax = "proto3";
package moby.buildkit.secrets.v1;
message GetSecretRequest { string ID = 1; map<string, string> annotations = 2; }
message GetSecretResponse { bytes data = 1; }
`;

// BuildKit checks the session's health every few seconds and drops a session that
// does not answer (docs/docker-notes.md).
const HEALTH_SCHEMA = `
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse { int32 status = 1; }
`;

const root = new protobuf.Root();
for (const text of [SCHEMA, AUTH_SCHEMA, SECRETS_SCHEMA, HEALTH_SCHEMA]) protobuf.parse(text, root, { keepCase: true });

export interface Timestamp {
  seconds: number;
  nanos: number;
}
export interface Vertex {
  digest: string;
  inputs: string[];
  name: string;
  cached: boolean;
  started: Timestamp | null;
  completed: Timestamp | null;
  error: string;
}
export interface VertexStatus {
  ID: string;
  vertex: string;
  name: string;
  current: number;
  total: number;
  started: Timestamp | null;
  completed: Timestamp | null;
}
export interface VertexLog {
  vertex: string;
  stream: number;
  msg: Buffer;
}
export interface VertexWarning {
  vertex: string;
  level: number;
  short: Buffer;
  detail: Buffer[];
  url: string;
}
export interface StatusResponse {
  vertexes: Vertex[];
  statuses: VertexStatus[];
  logs: VertexLog[];
  warnings: VertexWarning[];
}

const StatusType = root.lookupType('moby.buildkit.v1.StatusResponse');
// int64 as JS numbers (timestamps and byte counts fit), bytes as Buffers, absent
// messages as null, repeated fields as arrays: one predictable shape for the formatter.
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, bytes: Buffer, arrays: true, defaults: false };

/** Decodes the base64 `aux` of a `moby.buildkit.trace` message. */
export function decodeStatus(aux: string): StatusResponse {
  const msg = StatusType.toObject(StatusType.decode(Buffer.from(aux, 'base64')), TO_OBJECT) as Partial<StatusResponse>;
  return {
    vertexes: (msg.vertexes ?? []).map((v) => ({
      digest: v.digest ?? '',
      inputs: v.inputs ?? [],
      name: v.name ?? '',
      cached: v.cached ?? false,
      started: v.started ?? null,
      completed: v.completed ?? null,
      error: v.error ?? '',
    })),
    statuses: (msg.statuses ?? []).map((s) => ({
      ID: s.ID ?? '',
      vertex: s.vertex ?? '',
      name: s.name ?? '',
      current: s.current ?? 0,
      total: s.total ?? 0,
      started: s.started ?? null,
      completed: s.completed ?? null,
    })),
    logs: (msg.logs ?? []).map((l) => ({ vertex: l.vertex ?? '', stream: l.stream ?? 0, msg: l.msg ?? Buffer.alloc(0) })),
    warnings: (msg.warnings ?? []).map((w) => ({ vertex: w.vertex ?? '', level: w.level ?? 0, short: w.short ?? Buffer.alloc(0), detail: w.detail ?? [], url: w.url ?? '' })),
  };
}

/** Encodes a StatusResponse as the engine sends it (base64): for tests and benchmarks. */
export function encodeStatus(status: Partial<StatusResponse>): string {
  return Buffer.from(StatusType.encode(StatusType.fromObject(status)).finish()).toString('base64');
}

/** A gRPC method's (de)serialisers over a protobufjs message pair. */
export function messageCodec(requestType: string, responseType: string) {
  const req = root.lookupType(requestType);
  const res = root.lookupType(responseType);
  return {
    decodeRequest: (buf: Buffer) => req.toObject(req.decode(buf), { ...TO_OBJECT, defaults: true }),
    encodeResponse: (obj: Record<string, unknown>) => Buffer.from(res.encode(res.fromObject(obj)).finish()),
  };
}
