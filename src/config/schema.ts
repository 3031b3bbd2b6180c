import Type from 'typebox';
import { AuthSchema, TrustProxySchema } from './auth.ts';
import { EdgeVerifySchema, OnFailureSchema, ProbeSchema } from './verify.ts';
import { GitHubReportFields, MetricsSchema, NotifySchema, PipelineReportFields } from './integrations.ts';

/**
 * The config file's shape as written by the operator (before secrets and defaults are
 * resolved). Every object is closed: an unknown key is an error that names its path.
 */
const closed = { additionalProperties: false } as const;
const Duration = Type.Union([Type.String(), Type.Number({ minimum: 0 })]);
const NonEmpty = Type.String({ minLength: 1 });

/** A Docker engine: unix:///path, tcp://host:port (with TLS files) or ssh://user@host. */
export const DockerEndpointSchema = Type.Object(
  {
    host: Type.Optional(NonEmpty),
    tls: Type.Optional(Type.Object({ ca: NonEmpty, cert: NonEmpty, key: NonEmpty }, closed)),
  },
  closed,
);

export const DeploySettingsSchema = Type.Object(
  {
    order: Type.Optional(Type.Union([Type.Literal('start-first'), Type.Literal('stop-first')])),
    monitor: Type.Optional(Duration),
    timeout: Type.Optional(Duration),
    failureAction: Type.Optional(
      Type.Union([Type.Literal('rollback'), Type.Literal('pause'), Type.Literal('continue')]),
    ),
    verify: Type.Optional(EdgeVerifySchema),
    probe: Type.Optional(ProbeSchema),
  },
  closed,
);

export const PipelineSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,62}$' }),
    repo: Type.String({ pattern: '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$' }),
    url: Type.Optional(NonEmpty),
    branch: Type.Optional(NonEmpty),
    build: Type.Optional(
      Type.Object(
        {
          context: Type.Optional(NonEmpty),
          dockerfile: Type.Optional(NonEmpty),
          args: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]))),
          target: Type.Optional(NonEmpty),
          builder: Type.Optional(Type.Union([Type.Literal('buildkit'), Type.Literal('classic')])),
          platform: Type.Optional(NonEmpty),
          secrets: Type.Optional(Type.Record(Type.String(), Type.Object({ file: Type.Optional(NonEmpty), env: Type.Optional(NonEmpty) }, closed))),
          cacheFrom: Type.Optional(Type.Array(NonEmpty)),
        },
        closed,
      ),
    ),
    image: NonEmpty,
    tag: Type.Optional(NonEmpty),
    services: Type.Array(Type.Union([NonEmpty, Type.Object({ name: NonEmpty, docker: Type.Optional(DockerEndpointSchema) }, closed)])),
    deploy: Type.Optional(DeploySettingsSchema),
    timeouts: Type.Optional(
      Type.Object(
        { fetch: Type.Optional(Duration), build: Type.Optional(Duration), push: Type.Optional(Duration), deploy: Type.Optional(Duration) },
        closed,
      ),
    ),
    cancelSuperseded: Type.Optional(Type.Boolean()),
    retention: Type.Optional(
      Type.Object(
        {
          runs: Type.Optional(Type.Integer({ minimum: 1 })),
          age: Type.Optional(Duration),
          logSize: Type.Optional(Type.Union([Type.String(), Type.Integer({ minimum: 1024 })])),
          images: Type.Optional(Type.Integer({ minimum: 1 })),
          protect: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        closed,
      ),
    ),
    poll: Type.Optional(Type.Union([Duration, Type.Literal(false)])),
    onFailure: Type.Optional(OnFailureSchema),
    ...PipelineReportFields,
  },
  closed,
);

const SecretFields = {
  webhookSecret: Type.Optional(Type.String()),
  webhookSecretFile: Type.Optional(NonEmpty),
  token: Type.Optional(Type.String()),
  tokenFile: Type.Optional(NonEmpty),
};

export const ConfigSchema = Type.Object(
  {
    listen: Type.Optional(NonEmpty),
    publicUrl: Type.Optional(NonEmpty),
    dataDir: Type.Optional(NonEmpty),
    redis: Type.Optional(NonEmpty),
    redisPrefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })),
    logLevel: Type.Optional(
      Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
    ),
    github: Type.Object({ ...SecretFields, ...GitHubReportFields }, closed),
    auth: AuthSchema,
    trustProxy: Type.Optional(TrustProxySchema),
    docker: Type.Optional(
      Type.Object(
        {
          ...DockerEndpointSchema.properties,
          // Where service updates go (a swarm manager), when not the engine builds use.
          manager: Type.Optional(DockerEndpointSchema),
        },
        closed,
      ),
    ),
    instance: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.:/@-]{1,200}$' })),
    driftInterval: Type.Optional(Duration),
    rollbackCheckInterval: Type.Optional(Type.Union([Duration, Type.Literal(false)])),
    registries: Type.Optional(
      Type.Array(
        Type.Object(
          {
            host: NonEmpty,
            username: Type.Optional(NonEmpty),
            password: Type.Optional(Type.String()),
            passwordFile: Type.Optional(NonEmpty),
          },
          closed,
        ),
      ),
    ),
    http: Type.Optional(Type.Object({ requestTimeout: Type.Optional(Duration), headersTimeout: Type.Optional(Duration) }, closed)),
    worker: Type.Optional(
      Type.Object({ concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })), deadAfter: Type.Optional(Duration) }, closed),
    ),
    pipelines: Type.Array(PipelineSchema),
    notify: Type.Optional(NotifySchema),
    metrics: Type.Optional(MetricsSchema),
  },
  closed,
);
