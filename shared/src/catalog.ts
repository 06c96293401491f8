/**
 * @module
 * The catalog: the bridge's configuration file, naming the stdio MCP servers it serves and how
 * the bridge itself behaves. Written in YAML or JSON (YAML is a superset, so one parser reads
 * both) and validated with zod so that a bad file stops start-up with every mistake listed by
 * field path, instead of failing later at run time.
 *
 * The JSDoc on each schema property is the reference documentation for that field.
 */
import { readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { LineCounter, parseDocument } from 'yaml'
import * as z from 'zod'
import { LOG_LEVELS } from './logger.ts'
import { DURATION_HINT, SIZE_HINT, parseDuration, parseSize } from './units.ts'
import {
  AccessSchema,
  AuthSettingsSchema,
  LimitsSchema,
  ServerAuthSchema,
  ServerLimitsSchema,
} from './catalog-security.ts'

// ---------------------------------------------------------------------------------------------
// Durations and sizes

// Node's timers overflow above 2^31-1 ms and then fire immediately, which would turn a long idle
// timeout into an instant one.
const MAX_TIMER_MS = 2 ** 31 - 1

const quantity = (
  parse: (value: string | number) => number,
  hint: string,
  options: { allowZero: boolean; max?: number; maxReason?: string }
) =>
  z
    .union([z.number(), z.string()], {
      error: (issue) => (issue.input === undefined ? 'required' : hint),
    })
    .transform((value, ctx) => {
      let parsed: number
      try {
        parsed = parse(value)
      } catch {
        ctx.addIssue({ code: 'custom', message: hint, input: value })
        return z.NEVER
      }
      if (!options.allowZero && parsed === 0) {
        ctx.addIssue({ code: 'custom', message: 'must be greater than 0', input: value })
        return z.NEVER
      }
      if (options.max !== undefined && parsed > options.max) {
        ctx.addIssue({ code: 'custom', message: options.maxReason ?? hint, input: value })
        return z.NEVER
      }
      return parsed
    })

/** A duration field: number of milliseconds or a string such as `"30s"`; parsed to milliseconds. */
const duration = (options: { allowZero?: boolean; timer?: boolean } = {}) =>
  quantity(parseDuration, DURATION_HINT, {
    allowZero: options.allowZero ?? false,
    ...(options.timer === false
      ? {}
      : {
          max: MAX_TIMER_MS,
          maxReason: `must be at most ${MAX_TIMER_MS}ms (about 24.8 days), the longest timer Node.js supports`,
        }),
  })

/** A size field: number of bytes or a string such as `"4mb"`; parsed to bytes. */
const size = () => quantity(parseSize, SIZE_HINT, { allowZero: false })

// ---------------------------------------------------------------------------------------------
// Small field schemas

// YAML turns unquoted `3000` or `true` into non-strings, a common surprise in `env` and `args`.
const yamlString = () =>
  z.string({
    error: (issue) =>
      issue.input === undefined
        ? 'required'
        : `expected a string, got ${describeValue(issue.input)} (quote numbers and booleans in YAML, e.g. "3000")`,
  })

// Not `z.int()`: its failure aborts the parse, which would hide the cross-field checks below.
const integer = () =>
  z.number().refine(Number.isInteger, {
    error: (issue) => `expected an integer, got ${describeValue(issue.input)}`,
  })

const nonEmpty = () => yamlString().regex(/\S/, 'must not be empty')

const OriginSchema = z.string().transform((value, ctx) => {
  if (value === '*') return value
  const message = `expected an origin like "https://app.example.com" (scheme, host and optional port, no path) or "*"`
  let url: URL
  try {
    url = new URL(value)
  } catch {
    ctx.addIssue({ code: 'custom', message, input: value })
    return z.NEVER
  }
  const bare = url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password
  if (url.origin === 'null' || !bare || !/^[a-z][a-z0-9+.-]*:\/\/[^/]+\/?$/i.test(value)) {
    ctx.addIssue({ code: 'custom', message, input: value })
    return z.NEVER
  }
  // Browsers send the serialised origin (lowercase host, default port dropped); compare to that.
  return url.origin
})

const HostSchema = z
  .string()
  .regex(
    /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:\d{1,5})?$/i,
    'expected a host name like "mcp.example.com" or "mcp.example.com:8443" (IPv6 in brackets)'
  )
  .transform((value) => value.toLowerCase())

const PublicUrlSchema = z.string().transform((value, ctx) => {
  let url: URL | undefined
  try {
    url = new URL(value)
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash) {
    ctx.addIssue({
      code: 'custom',
      message:
        'expected an absolute http(s) URL without query or fragment, like "https://mcp.example.com"',
      input: value,
    })
    return z.NEVER
  }
  // Consumers append paths such as `/mcp`; a trailing slash would double it.
  return url.href.replace(/\/+$/, '')
})

const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]']

const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)

// ---------------------------------------------------------------------------------------------
// Bridge settings

/** Server-Sent Events behaviour of the MCP endpoint. */
const SseSettingsSchema = z.strictObject({
  /** Interval between SSE keep-alive comments, which stop proxies closing quiet streams. Default `15s`. */
  keepAlive: duration().prefault('15s'),
  /** Value of the SSE `retry:` field: how long clients wait before reconnecting. Default `1000` (ms). */
  retry: duration({ allowZero: true }).prefault(1000),
  /**
   * Close the SSE response of a long-running POST after this long, with a `retry:` hint, so the
   * client resumes with `Last-Event-ID` (SEP-1699 polling); useful behind proxies that cut long
   * responses. `0` never closes. Default `0`.
   */
  pollAfter: duration({ allowZero: true }).prefault(0),
})

/** The bridge's pooled connections to session workloads (their sidecars). */
const ConnectionSettingsSchema = z.strictObject({
  /** Close a pooled sidecar connection that has been unused this long. Default `60s`. */
  idleClose: duration().prefault('60s'),
  /** Give up connecting to a sidecar after this long. Default `5s`. */
  dialTimeout: duration().prefault('5s'),
  /** Interval between WebSocket pings that detect dead connections. Default `15s`. */
  heartbeat: duration().prefault('15s'),
  /** Largest WebSocket message accepted from a sidecar. Default `16mb`. */
  maxPayload: size().prefault('16mb'),
})

/** Settings of the bridge process itself (the `bridge:` section). */
export const BridgeSettingsSchema = z
  .strictObject({
    /** Interface to listen on. Default `127.0.0.1`. */
    host: nonEmpty().default('127.0.0.1'),
    /** TCP port to listen on; `0` picks a free port. Default `8080`. */
    port: integer().min(0).max(65535).default(8080),
    /**
     * Canonical external URL of the bridge (scheme, host and optional path prefix), as clients
     * reach it through proxies. Optional; a trailing slash is removed.
     */
    publicUrl: PublicUrlSchema.optional(),
    /**
     * `Origin` header values allowed besides same-host localhost ones, as `scheme://host[:port]`.
     * `"*"` allows any origin and must be given explicitly. Default `[]`.
     */
    allowedOrigins: z.array(OriginSchema).default([]),
    /**
     * `Host` header values allowed (DNS-rebinding protection). An entry without a port matches
     * any port. When omitted: `localhost`, `127.0.0.1` and `[::1]` if `host` is a loopback
     * address, otherwise nothing. An empty list (given or resulting) means `Host` is not checked.
     */
    allowedHosts: z.array(HostSchema).optional(),
    /** Largest accepted POST body. Default `4mb`. */
    bodyLimit: size().prefault('4mb'),
    /** Most concurrent sessions this replica starts; `0` means unlimited. Default `1000`. */
    maxSessions: integer().min(0).default(1000),
    /** Session tokens older than this are refused with 404, so clients start over. Default `24h`. */
    sessionMaxAge: duration({ timer: false }).prefault('24h'),
    /** How long a server may take to start, unless the server sets its own. Default `30s`. */
    startTimeout: duration().prefault('30s'),
    /** Stop a session's server after this long without traffic, unless the server sets its own. Default `15m`. */
    idleTimeout: duration().prefault('15m'),
    /** Server-Sent Events settings. */
    sse: SseSettingsSchema.prefault({}),
    /** Bridge-to-sidecar connection settings. */
    connection: ConnectionSettingsSchema.prefault({}),
    /** How the bridge runs `runtime: local` servers. */
    local: z
      .strictObject({
        /**
         * Most local session starts booting at once, each from its workload's start until its
         * server answers `initialize`; the others wait their turn within their `startTimeout`.
         * `0` means no limit. Default `os.availableParallelism() + 1`: one more than the CPUs
         * this process may use, so a boot waiting on its disk leaves no CPU idle.
         */
        maxConcurrentStarts: integer()
          .min(0)
          .default(() => availableParallelism() + 1),
      })
      .prefault({}),
    /** How the bridge reaches the Kubernetes API (only used by `runtime: kubernetes` servers). */
    kubernetes: z
      .strictObject({
        /**
         * Kubeconfig file. Default: `$KUBECONFIG`, then `~/.kube/config`, then the in-cluster
         * service account.
         */
        kubeconfig: nonEmpty().optional(),
        /** Kubeconfig context to use. Default: the file's current context. */
        context: nonEmpty().optional(),
        /** How often each replica sweeps away Jobs of sessions that are over. Default `60s`. */
        sweepInterval: duration().prefault('60s'),
      })
      .prefault({}),
    /** On SIGTERM/SIGINT, how long in-flight requests may finish before the bridge exits. Default `10s`. */
    shutdownGrace: duration({ allowZero: true }).prefault('10s'),
    /**
     * On SIGTERM/SIGINT, how long the bridge keeps serving while `/readyz` already fails, so
     * load balancers stop routing to it before its listener closes. Part of `shutdownGrace`.
     * Default `1s`.
     */
    drainDelay: duration({ allowZero: true }).prefault('1s'),
    /** Log level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`. Default `info`. */
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** How clients authenticate (see `catalog-security.ts`). Default: `mode: none`, loopback only. */
    auth: AuthSettingsSchema.prefault({}),
    /** Quotas on sessions and requests (see `catalog-security.ts`). */
    limits: LimitsSchema.prefault({}),
  })
  .transform(({ allowedHosts, ...settings }) => ({
    ...settings,
    allowedHosts: allowedHosts ?? (isLoopback(settings.host) ? [...LOOPBACK_HOSTS] : []),
  }))

// ---------------------------------------------------------------------------------------------
// Servers

/** How much of a session's output is kept so a reconnecting client can resume its streams. */
const EventLogSchema = z.strictObject({
  /** Most events kept per session. Default `1000`. */
  maxEvents: integer().min(1).default(1000),
  /** Most bytes of events kept per session. Default `8mb`. */
  maxBytes: size().prefault('8mb'),
  /** Events older than this are dropped. Default `10m`. */
  maxAge: duration().prefault('10m'),
})

const EnvNameSchema = z
  .string()
  .regex(/^[^=\0]+$/, 'environment variable names must be non-empty and contain no "="')

/** Fields every server has, whatever its runtime: session timeouts, limits, security. */
const sessionFields = {
  /** Stop a session's server after this long without traffic. Default: `bridge.idleTimeout`. */
  idleTimeout: duration().optional(),
  /**
   * How long a session may take to start: the server process (`local`), or scheduling, image
   * pull and start of the pod (`kubernetes`). Default: `bridge.startTimeout`.
   */
  startTimeout: duration().optional(),
  /** Longest line the server may write to standard output (one JSON-RPC message). Default `16mb`. */
  maxLineBytes: size().prefault('16mb'),
  /** Time between SIGTERM and SIGKILL when stopping the server. Default `5s`. */
  stopGrace: duration({ allowZero: true }).prefault('5s'),
  /** Per-session event log used to resume interrupted streams. */
  eventLog: EventLogSchema.prefault({}),
  /** Authentication for this server, replacing `bridge.auth` as a whole. Optional. */
  auth: ServerAuthSchema.optional(),
  /** Who may start sessions of this server. Optional: every authenticated principal. */
  access: AccessSchema.optional(),
  /** Quotas of this server. Optional. */
  limits: ServerLimitsSchema.optional(),
}

/** A server run as a local child process of the bridge (`runtime: local`). */
export const LocalServerSchema = z.strictObject({
  /** Where the server runs: `local` starts it as a child process of the bridge. Required. */
  runtime: z.literal('local'),
  /** Executable to start, looked up on `PATH` unless it contains a slash. Required. */
  command: nonEmpty(),
  /** Arguments passed to `command`. Default `[]`. */
  args: z.array(yamlString()).default([]),
  /** Environment variables set for the server, on top of the inherited ones. Default `{}`. */
  env: z.record(EnvNameSchema, yamlString()).default({}),
  /** Pass the bridge's own environment through to the server. Default `true`. */
  inheritEnv: z.boolean().default(true),
  /** Working directory of the server; relative paths resolve against the bridge's. Optional. */
  cwd: nonEmpty().optional(),
  /**
   * How the sessions' sidecars run. `shared` (default): one sidecar host process, started by
   * the bridge, relays every session; each session still has its own server process, secret,
   * event log and idle timeout, and a session costs one process instead of two. `dedicated`:
   * one sidecar process per session, as in a Kubernetes pod; more memory and a slower start,
   * but a sidecar crash takes down only its own session.
   */
  sidecar: z.enum(['shared', 'dedicated']).default('shared'),
  ...sessionFields,
})

// Kubernetes objects Ferry passes through to the pod spec; the API server validates their inner shape.
const KubeObjectSchema = z.record(z.string(), z.unknown())
const QuantitySchema = z
  .union([
    z
      .string()
      .regex(/^[0-9.]+[a-zA-Z]*$/, 'expected a Kubernetes quantity like "500m", "256Mi" or "1"'),
    z.number(),
  ])
  .transform(String)
const ResourceListSchema = z.strictObject({
  cpu: QuantitySchema.optional(),
  memory: QuantitySchema.optional(),
  'ephemeral-storage': QuantitySchema.optional(),
})
const K8S_LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/
const K8S_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** `envFrom` entry: every key of a Secret or ConfigMap becomes an environment variable. */
const EnvFromSchema = z.union([
  z.strictObject({
    secretRef: z.strictObject({
      name: z.string().regex(K8S_NAME),
      optional: z.boolean().optional(),
    }),
    prefix: z.string().optional(),
  }),
  z.strictObject({
    configMapRef: z.strictObject({
      name: z.string().regex(K8S_NAME),
      optional: z.boolean().optional(),
    }),
    prefix: z.string().optional(),
  }),
])

/** A server run as one Kubernetes Job per session (`runtime: kubernetes`). */
export const KubernetesServerSchema = z.strictObject({
  /** Where the server runs: `kubernetes` starts a `batch/v1` Job per session. Required. */
  runtime: z.literal('kubernetes'),
  /** Namespace of the session Jobs. Default `ferry-sessions`. */
  namespace: z
    .string()
    .regex(K8S_NAME, 'expected a namespace name (RFC 1123 label)')
    .default('ferry-sessions'),
  /**
   * How the sidecar gets into the pod. `image`: `image` is the Ferry sidecar image (Node with
   * `npx` and `uvx`), which runs the sidecar and the server. `inject`: an init container copies the
   * bundled sidecar from `sidecarImage` into an `emptyDir`, and `image` (any image with Node) runs
   * `node /ferry/sidecar.mjs -- <command>`. Default `image`.
   */
  delivery: z.enum(['image', 'inject']).default('image'),
  /** Image of the session pod's `mcp` container. Required. */
  image: nonEmpty(),
  /** Image holding `/ferry/sidecar.mjs`, used by the `inject` delivery. Default `ghcr.io/ferry-mcp/sidecar:0.1.0`. */
  sidecarImage: nonEmpty().default('ghcr.io/ferry-mcp/sidecar:0.1.0'),
  /** The Node binary in `image` that runs the sidecar. Default `node`. */
  nodePath: nonEmpty().default('node'),
  /**
   * Where the sidecar bundle is in `image` (`image` delivery). With `inject` delivery it is
   * always `/ferry/sidecar.mjs`, where the init container puts it. Default `/ferry/sidecar.mjs`.
   */
  sidecarPath: nonEmpty().default('/ferry/sidecar.mjs'),
  /** The MCP server command, run by the sidecar. Required. */
  command: z.array(yamlString()).min(1, 'the server command is required'),
  /** Arguments appended to `command`. Default `[]`. */
  args: z.array(yamlString()).default([]),
  /** Environment variables of the server. Default `{}`. */
  env: z.record(EnvNameSchema, yamlString()).default({}),
  /** Secrets and ConfigMaps whose keys become environment variables of the server. Default `[]`. */
  envFrom: z.array(EnvFromSchema).default([]),
  /** Resource requests and limits of the `mcp` container. Default: requests `100m`/`128Mi`, limit `512Mi` memory. */
  resources: z
    .strictObject({
      requests: ResourceListSchema.optional(),
      limits: ResourceListSchema.optional(),
    })
    .default({ requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } }),
  /** ServiceAccount of session pods; its token is never mounted. Optional (the namespace default). */
  serviceAccountName: z.string().regex(K8S_NAME).optional(),
  /** Node labels session pods must match. Default `{}`. */
  nodeSelector: z.record(z.string(), z.string()).default({}),
  /** Pod tolerations, as in the pod spec. Default `[]`. */
  tolerations: z
    .array(
      z.strictObject({
        key: z.string().optional(),
        operator: z.enum(['Exists', 'Equal']).optional(),
        value: z.string().optional(),
        effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
        tolerationSeconds: integer().optional(),
      })
    )
    .default([]),
  /** Pod affinity and anti-affinity, as in the pod spec. Optional. */
  affinity: KubeObjectSchema.optional(),
  /** PriorityClass of session pods. Optional. */
  priorityClassName: z.string().regex(K8S_NAME).optional(),
  /** RuntimeClass of session pods (e.g. `gvisor`, `kata`). Optional. */
  runtimeClassName: z.string().regex(K8S_NAME).optional(),
  /** Image pull policy of the containers. Default `IfNotPresent`. */
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
  /** Names of image pull Secrets. Default `[]`. */
  imagePullSecrets: z.array(z.string().regex(K8S_NAME)).default([]),
  /** Extra pod volumes, as in the pod spec (restricted Pod Security allows configMap, secret, emptyDir, projected, downwardAPI, csi, ephemeral, persistentVolumeClaim). Default `[]`. */
  volumes: z
    .array(
      z.looseObject({ name: z.string().regex(K8S_NAME, 'expected a volume name (RFC 1123 label)') })
    )
    .default([]),
  /** Mounts of those volumes into the `mcp` container. Default `[]`. */
  volumeMounts: z
    .array(
      z.strictObject({
        name: z.string(),
        mountPath: z.string(),
        readOnly: z.boolean().optional(),
        subPath: z.string().optional(),
      })
    )
    .default([]),
  /** Extra labels on the Job and its pod. Default `{}`. */
  labels: z
    .record(
      z.string(),
      z
        .string()
        .regex(
          K8S_LABEL_VALUE,
          'expected a label value (≤ 63 characters, alphanumerics, "-", "_", ".")'
        )
    )
    .default({}),
  /** Extra annotations on the Job and its pod. Default `{}`. */
  annotations: z.record(z.string(), z.string()).default({}),
  /** Seconds after a session's Job finished until Kubernetes deletes it. Default `300`. */
  ttlSecondsAfterFinished: integer().min(0).default(300),
  /** Hard cap on a session's lifetime, in seconds. Default `14400` (4 h). */
  activeDeadlineSeconds: integer().min(1).default(14_400),
  /** Port the sidecar listens on in the pod. Default `8080`. */
  port: integer().min(1).max(65535).default(8080),
  /** Size limit of the writable `emptyDir` mounted at `/tmp` (the root filesystem is read-only). Default `256Mi`. */
  tmpSizeLimit: QuantitySchema.default('256Mi'),
  /**
   * A partial pod template (`metadata` and `spec`) merged into the generated one *before* Ferry's
   * required settings, so it can add anything (sidecars, DNS config, …) but cannot weaken the
   * security context, restart policy or the sidecar command. Containers merge by name; the MCP
   * container is named `mcp`. Optional.
   */
  podTemplatePatch: KubeObjectSchema.optional(),
  ...sessionFields,
})

/** One served MCP server, discriminated by `runtime`. */
export const ServerSchema = z.discriminatedUnion('runtime', [
  LocalServerSchema,
  KubernetesServerSchema,
])

const SERVER_NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/
// These collide with the bridge's own routes (`/mcp`, health and metrics endpoints).
const RESERVED_NAMES = new Set(['mcp', 'healthz', 'readyz', 'metrics'])

const serverNameProblem = (name: string): string | undefined => {
  if (RESERVED_NAMES.has(name) || name.startsWith('.well-known')) {
    return `server name "${name}" is reserved for the bridge's own routes`
  }
  if (!SERVER_NAME.test(name)) {
    return `invalid server name "${name}": use 1-32 lowercase letters, digits and "-", starting and ending with a letter or digit (names become URL path segments)`
  }
  return undefined
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

// A refinement runs only on fully valid input by default; `when` makes name problems appear
// alongside other mistakes instead of after they are fixed.
const always = { when: () => true }

const ServersSchema = z
  .record(z.string(), ServerSchema)
  .superRefine((servers: unknown, ctx) => {
    if (!isRecord(servers)) return
    for (const name of Object.keys(servers)) {
      const problem = serverNameProblem(name)
      if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem, input: name })
    }
  }, always)
  .refine((servers) => Object.keys(servers).length > 0, 'at least one server is required')

// ---------------------------------------------------------------------------------------------
// Catalog

/** The whole catalog file. */
export const CatalogSchema = z
  .strictObject({
    /** Settings of the bridge itself; every field has a default. */
    bridge: BridgeSettingsSchema.prefault({}),
    /** Server also served at `/mcp`, besides `/<name>/mcp`. Optional; must name a server. */
    defaultServer: z.string().optional(),
    /** The servers to serve, by name; the name is the URL path segment. At least one. */
    servers: ServersSchema,
  })
  .superRefine((catalog: unknown, ctx) => {
    if (!isRecord(catalog) || typeof catalog.defaultServer !== 'string') return
    const { defaultServer, servers } = catalog
    if (!isRecord(servers) || Object.hasOwn(servers, defaultServer)) return
    const names = Object.keys(servers)
    ctx.addIssue({
      code: 'custom',
      path: ['defaultServer'],
      input: defaultServer,
      message: `no server named "${defaultServer}" in servers${names.length ? ` (defined: ${names.join(', ')})` : ''}`,
    })
  }, always)
  .transform((catalog) => ({
    ...catalog,
    servers: Object.fromEntries(
      Object.entries(catalog.servers).map(([name, server]) => [
        name,
        {
          ...server,
          idleTimeout: server.idleTimeout ?? catalog.bridge.idleTimeout,
          startTimeout: server.startTimeout ?? catalog.bridge.startTimeout,
        },
      ])
    ) as Record<string, ServerConfig>,
  }))

type WithTimeouts<T> = T extends unknown
  ? Omit<T, 'idleTimeout' | 'startTimeout'> & {
      /** Idle timeout in milliseconds, the server's own or `bridge.idleTimeout`. */
      idleTimeout: number
      /** Start timeout in milliseconds, the server's own or `bridge.startTimeout`. */
      startTimeout: number
    }
  : never

/** Parsed bridge settings: defaults applied, durations in milliseconds, sizes in bytes. */
export type BridgeSettings = z.output<typeof BridgeSettingsSchema>
/** A parsed local server, with its timeouts resolved against the bridge defaults. */
export type LocalServerConfig = WithTimeouts<z.output<typeof LocalServerSchema>>
/** A parsed Kubernetes server, with its timeouts resolved against the bridge defaults. */
export type KubernetesServerConfig = WithTimeouts<z.output<typeof KubernetesServerSchema>>
/** A parsed server of any runtime, with its timeouts resolved against the bridge defaults. */
export type ServerConfig = WithTimeouts<z.output<typeof ServerSchema>>
/** A parsed, valid catalog. */
export type Catalog = z.output<typeof CatalogSchema>

// ---------------------------------------------------------------------------------------------
// Errors

/** One problem in a catalog: the dotted path of the bad field (empty for the whole file) and why. */
export interface CatalogIssue {
  path: string
  message: string
}

/**
 * A catalog that cannot be used. The message is meant to be printed as is: it starts with the
 * source and lists each problem on its own line.
 */
export class CatalogError extends Error {
  readonly issues: CatalogIssue[]
  readonly source?: string

  constructor(summary: string, issues: CatalogIssue[], source?: string) {
    const lines = issues.map(
      (issue) => `  - ${issue.path ? `${issue.path}: ` : ''}${issue.message}`
    )
    super([`${source ?? 'catalog'}: ${summary}`, ...lines].join('\n'))
    this.name = 'CatalogError'
    this.issues = issues
    if (source !== undefined) this.source = source
  }
}

const describeValue = (value: unknown): string => {
  if (value === null) return 'an empty value'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return typeof value
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
}

const quoteAll = (values: readonly unknown[]): string =>
  values.map((v) => JSON.stringify(v)).join(', ')

// Rewords zod's generic messages for people editing a YAML file; schema-level messages win.
const issueMessage: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'required'
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${describeValue(issue.input)}`
    case 'invalid_value': {
      const expected =
        issue.values.length === 1
          ? JSON.stringify(issue.values[0])
          : `one of ${quoteAll(issue.values)}`
      return issue.input === undefined
        ? `required (expected ${expected})`
        : `expected ${expected}, got ${describeValue(issue.input)}`
    }
    case 'invalid_union': {
      if (!issue.discriminator) return undefined
      const expected = quoteAll(Array.isArray(issue.options) ? issue.options : [])
      const got = isRecord(issue.input) ? issue.input[issue.discriminator] : undefined
      return got === undefined
        ? `required (one of ${expected})`
        : `expected one of ${expected}, got ${describeValue(got)}`
    }
    case 'too_small': {
      const minimum = Number(issue.minimum)
      if (issue.origin === 'string' && minimum === 1) return 'must not be empty'
      if (issue.origin === 'array') return `must have at least ${minimum} entries`
      return issue.inclusive ? `must be at least ${minimum}` : `must be greater than ${minimum}`
    }
    case 'too_big':
      if (issue.origin === 'array') return `must have at most ${Number(issue.maximum)} entries`
      return issue.inclusive
        ? `must be at most ${Number(issue.maximum)}`
        : `must be less than ${Number(issue.maximum)}`
    default:
      return undefined
  }
}

const formatPath = (path: readonly PropertyKey[]): string =>
  path
    .map((segment, index) => {
      if (typeof segment === 'number') return `[${segment}]`
      const key = String(segment)
      if (/^[\w$-]+$/.test(key)) return index === 0 ? key : `.${key}`
      return `[${JSON.stringify(key)}]`
    })
    .join('')

/** The object keys a schema accepts at `path`, used to suggest corrections for unknown keys. */
const knownKeys = (schema: z.ZodType, path: readonly PropertyKey[]): string[] => {
  const unwrap = (s: z.ZodType): z.ZodType[] => {
    if (s instanceof z.ZodPipe) return unwrap(s.in as z.ZodType)
    if (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional) {
      return unwrap(s.unwrap() as z.ZodType)
    }
    if (s instanceof z.ZodUnion) return (s.options as z.ZodType[]).flatMap(unwrap)
    return [s]
  }
  let current = unwrap(schema)
  for (const segment of path) {
    current = current.flatMap((s) => {
      if (s instanceof z.ZodObject) {
        const child = (s.shape as Record<string, z.ZodType>)[String(segment)]
        return child ? unwrap(child) : []
      }
      if (s instanceof z.ZodRecord) return unwrap(s.valueType as z.ZodType)
      if (s instanceof z.ZodArray) return unwrap(s.element as z.ZodType)
      return []
    })
  }
  return current.flatMap((s) => (s instanceof z.ZodObject ? Object.keys(s.shape) : []))
}

const distance = (a: string, b: string): number => {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (row[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)
      )
    }
    previous = row
  }
  return previous[b.length] ?? 0
}

const suggest = (key: string, candidates: string[]): string | undefined => {
  const normalise = (s: string) => s.toLowerCase().replace(/[-_]/g, '')
  let best: { name: string; score: number } | undefined
  for (const name of candidates) {
    const score = normalise(name) === normalise(key) ? 0 : distance(key, name)
    if (score <= 2 && (!best || score < best.score)) best = { name, score }
  }
  return best?.name
}

const toIssues = (error: z.ZodError): CatalogIssue[] => {
  const issues = error.issues.flatMap((issue): CatalogIssue[] => {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys(CatalogSchema, issue.path)
      return issue.keys.map((key) => {
        const hint = suggest(key, known)
        return {
          path: formatPath([...issue.path, key]),
          message: `unknown field${hint ? ` (did you mean "${hint}"?)` : ''}`,
        }
      })
    }
    if (issue.code === 'invalid_key') {
      return issue.issues.map((inner) => ({ path: formatPath(issue.path), message: inner.message }))
    }
    return [{ path: formatPath(issue.path), message: issue.message }]
  })
  // A field can fail several checks (`0.5` is neither an integer nor at least 1); the first one
  // is enough to fix it, and one line per field keeps the report readable.
  const seen = new Set<string>()
  return issues.filter((issue) => !seen.has(issue.path) && seen.add(issue.path))
}

const validate = (data: unknown, source: string | undefined): Catalog => {
  const result =
    data === null || data === undefined
      ? undefined
      : CatalogSchema.safeParse(data, { error: issueMessage })
  if (result?.success) return result.data
  const issues = result
    ? toIssues(result.error)
    : [{ path: '', message: 'the catalog is empty; it needs at least a "servers" mapping' }]
  const summary = `invalid catalog (${issues.length} ${issues.length === 1 ? 'problem' : 'problems'})`
  throw new CatalogError(summary, issues, source)
}

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * Parses and validates catalog text, YAML or JSON.
 * @param source file path or other label used in error messages.
 * @throws {CatalogError} on syntax errors (with line and column) or invalid content.
 */
export const parseCatalog = (text: string, source?: string): Catalog => {
  const lineCounter = new LineCounter()
  // `merge` enables `<<: *defaults`, handy for servers sharing settings.
  const document = parseDocument(text, { lineCounter, prettyErrors: false, merge: true })
  if (document.errors.length > 0) {
    const issues = document.errors.map((error) => {
      const { line, col } = lineCounter.linePos(error.pos[0])
      return { path: '', message: `line ${line}, column ${col}: ${error.message}` }
    })
    throw new CatalogError('syntax error', issues, source)
  }
  let data: unknown
  try {
    data = document.toJS()
  } catch (error) {
    // e.g. an alias to an undefined anchor, or too many aliases (a "billion laughs" file).
    const message = error instanceof Error ? error.message : String(error)
    throw new CatalogError('syntax error', [{ path: '', message }], source)
  }
  return validate(data, source)
}

/**
 * Reads and validates a catalog file.
 * @throws {CatalogError} naming the path when the file cannot be read or is invalid.
 */
export const loadCatalogFile = async (path: string): Promise<Catalog> => {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const message =
      code === 'ENOENT'
        ? 'file not found'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory, not a file'
            : error instanceof Error
              ? error.message
              : String(error)
    throw new CatalogError('cannot read the catalog', [{ path: '', message }], path)
  }
  return parseCatalog(text, path)
}

/**
 * The built-in catalog used when none is given: `@modelcontextprotocol/server-everything` as
 * server `everything`, also served at `/mcp`. The caller supplies how to start it because its
 * install location is only known at run time.
 */
export const defaultCatalog = (options: {
  everythingCommand: string
  everythingArgs: string[]
}): Catalog =>
  validate(
    {
      defaultServer: 'everything',
      servers: {
        everything: {
          runtime: 'local',
          command: options.everythingCommand,
          args: [...options.everythingArgs],
        },
      },
    },
    'built-in catalog'
  )
