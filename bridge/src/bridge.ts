/**
 * @module
 * Assembles a bridge from a catalog and a keyring: runtimes, connection pool,
 * session directory, metrics, the MCP handler and the Hono app. `serveBridge` puts it
 * on a Node HTTP server and handles draining on shutdown.
 */
import { serve, type ServerType } from '@hono/node-server'
import type { Tracer } from '@opentelemetry/api'
import type { MetricReader } from '@opentelemetry/sdk-metrics'
import type { Hono } from 'hono'
import type { Catalog, Logger } from '@ferry/shared'
import { createApp } from './app.ts'
import { createCatalogAuthenticators } from './auth/authenticator.ts'
import { type ProtectedResourceRoute, protectedResourceRoutes } from './auth/resource-metadata.ts'
import { InFlightLimiter } from './limits/in-flight.ts'
import {
  ClusterSessionCounter,
  LocalSessionCounter,
  type SessionCounter,
  sessionLimitsOf,
} from './limits/session-counter.ts'
import { RateLimiter } from './limits/token-bucket.ts'
import { StartGate } from './limits/start-gate.ts'
import { ConnectionPool } from './relay/connection-pool.ts'
import { KubernetesRuntime } from './runtime/kubernetes/kubernetes-runtime.ts'
import { LocalRuntime } from './runtime/local-runtime.ts'
import type { SessionRuntime } from './runtime/runtime.ts'
import type { Keyring } from './session/keyring.ts'
import { SessionDirectory } from './session/session-directory.ts'
import { SessionStarter } from './session/session-starter.ts'
import { createOriginPolicy } from './transport/request-checks.ts'
import { StreamableHTTPHandler } from './transport/streamable-http.ts'
import { BridgeMetrics } from './telemetry/metrics.ts'
import { Instrumentation } from './telemetry/operations.ts'
import { SERVICE_NAME, SERVICE_VERSION } from './telemetry/sdk.ts'

export interface BridgeOptions {
  catalog: Catalog
  keyring: Keyring
  logger: Logger
  /** Runtimes by kind; the local runtime is created when not given. */
  runtimes?: Record<string, SessionRuntime>
  /** Traces client messages and session starts when given (see `startTelemetry`). */
  tracer?: Tracer
  /** Metric readers besides `/metrics`, e.g. OTLP (see `startTelemetry`). */
  metricReaders?: MetricReader[]
}

export interface Bridge {
  app: Hono
  pool: ConnectionPool
  runtimes: Record<string, SessionRuntime>
  metrics: BridgeMetrics
  /** Marks the bridge as draining (`/readyz` fails). */
  drain(): void
  /** Ends every open SSE response with a `retry` hint so its client resumes elsewhere. */
  endStreams(): void
  close(): Promise<void>
}

/** The runtimes the catalog's servers need. */
const defaultRuntimes = (catalog: Catalog, logger: Logger): Record<string, SessionRuntime> => {
  const settings = catalog.bridge
  const servers = Object.values(catalog.servers)
  const runtimes: Record<string, SessionRuntime> = {
    local: new LocalRuntime({
      heartbeatMs: settings.connection.heartbeat,
      maxPayload: settings.connection.maxPayload,
      logLevel: settings.logLevel,
    }),
  }
  const namespaces = [
    ...new Set(
      servers.flatMap((server) => (server.runtime === 'kubernetes' ? [server.namespace] : []))
    ),
  ]
  if (namespaces.length > 0) {
    runtimes.kubernetes = new KubernetesRuntime({
      kubeconfig: settings.kubernetes.kubeconfig,
      context: settings.kubernetes.context,
      namespaces,
      sweepIntervalMs: settings.kubernetes.sweepInterval,
      connection: {
        heartbeatMs: settings.connection.heartbeat,
        maxPayload: settings.connection.maxPayload,
        logLevel: settings.logLevel,
      },
      logger: logger.child({ runtime: 'kubernetes' }),
    })
  }
  return runtimes
}

/** A runtime that can list the unfinished sessions of every replica (`KubernetesRuntime`). */
interface CountingRuntime {
  countSessions(
    signal: AbortSignal
  ): Promise<Iterable<{ session: string; server?: string; principal?: string }>>
}

/**
 * The concurrent-session counter of each runtime: exact in-memory counts for `local` (per
 * replica), counts from listings of the session Jobs for a runtime that can list them.
 */
const sessionCounters = (
  catalog: Catalog,
  runtimes: Record<string, SessionRuntime>
): Record<string, SessionCounter> => {
  const limits = sessionLimitsOf(catalog)
  const { sessionCount } = catalog.bridge.limits
  const counters: Record<string, SessionCounter> = {}
  for (const [kind, runtime] of Object.entries(runtimes)) {
    const counting = runtime as Partial<CountingRuntime>
    counters[kind] =
      typeof counting.countSessions === 'function'
        ? new ClusterSessionCounter({
            limits,
            list: (signal) => counting.countSessions!.call(runtime, signal),
            refreshInterval: sessionCount.refreshInterval,
            maxUncounted: sessionCount.maxUncounted,
          })
        : new LocalSessionCounter(limits)
  }
  return counters
}

/** The metadata routes, when some server is protected (`bearer` or `jwt`). */
const metadataRoutes = (catalog: Catalog): Hono | undefined => {
  const resources: ProtectedResourceRoute[] = []
  for (const [name, server] of Object.entries(catalog.servers)) {
    const auth = server.auth ?? catalog.bridge.auth
    resources.push({ path: `/${name}/mcp`, auth })
    if (name === catalog.defaultServer) resources.push({ path: '/mcp', auth })
  }
  if (resources.every((resource) => resource.auth.mode === 'none')) return undefined
  const { publicUrl } = catalog.bridge
  return protectedResourceRoutes({
    resources,
    ...(publicUrl === undefined ? {} : { publicUrl }),
  })
}

/** Bytes an SSE client may fall behind before its connection is cut (it can resume). */
const MAX_SSE_BACKLOG = 8 * 1024 * 1024

export const createBridge = (options: BridgeOptions): Bridge => {
  const { catalog, keyring, logger } = options
  const settings = catalog.bridge
  const runtimes = options.runtimes ?? defaultRuntimes(catalog, logger)
  const metrics = new BridgeMetrics({
    serviceName: SERVICE_NAME,
    serviceVersion: SERVICE_VERSION,
    readers: options.metricReaders,
  })
  const instrumentation = new Instrumentation(metrics, options.tracer)
  const pool = new ConnectionPool({
    dialTimeoutMs: settings.connection.dialTimeout,
    idleCloseMs: settings.connection.idleClose,
    maxPayload: settings.connection.maxPayload,
    heartbeatMs: settings.connection.heartbeat,
    onevicted: (count) => metrics.evicted(count),
    onsessionend: (exit, target) => {
      metrics.sessionEnd(exit.reason, exit.ageMs / 1000)
      starter.release(target.sessionName)
      // A session that idled out leaves a workload to remove. A crashed one is left to the
      // TTL and the sweep for a while, so its failure can be inspected (logs, conditions).
      if (target.workload && exit.reason !== 'server_exit') {
        starter.stopWorkload({ sessionName: target.sessionName, ...target.workload })
      }
    },
  })
  // Local starts boot servers on this machine, so they share its CPUs.
  const gates = { local: new StartGate(settings.local.maxConcurrentStarts) }
  metrics.observe({
    activeSessions: () =>
      Object.values(runtimes).map((runtime) => [runtime.kind, runtime.activeSessions()]),
    connections: () => pool.size,
    waitingStarts: () => Object.entries(gates).map(([kind, gate]) => [kind, gate.waiting]),
  })
  const directory = new SessionDirectory({ keyring, maxAgeSeconds: settings.sessionMaxAge / 1000 })
  const starter = new SessionStarter({
    servers: catalog.servers,
    runtimes,
    directory,
    pool,
    maxSessions: settings.maxSessions,
    logger,
    instrumentation,
    keyring,
    counters: sessionCounters(catalog, runtimes),
    sessionLimits: sessionLimitsOf(catalog),
    rate: new RateLimiter({
      perMinute: settings.limits.sessionRate.perMinute,
      burst: settings.limits.sessionRate.burst,
    }),
    gates,
  })
  const mcp = new StreamableHTTPHandler({
    servers: catalog.servers,
    directory,
    pool,
    starter,
    logger,
    instrumentation,
    originPolicy: createOriginPolicy(settings),
    authenticators: createCatalogAuthenticators(catalog),
    ...(settings.publicUrl === undefined ? {} : { publicUrl: settings.publicUrl }),
    keyring,
    limits: {
      inFlight: new InFlightLimiter({
        limit: settings.limits.maxInFlightPerSession,
        name: 'maxInFlightPerSession',
      }),
      streams: new InFlightLimiter({
        limit: settings.limits.maxStreamsPerSession,
        name: 'maxStreamsPerSession',
      }),
    },
    bodyLimit: settings.bodyLimit,
    streams: {
      keepAliveMs: settings.sse.keepAlive,
      retryMs: settings.sse.retry,
      pollAfterMs: settings.sse.pollAfter,
      maxBacklogBytes: MAX_SSE_BACKLOG,
    },
  })
  let ready = true
  const protectedResources = metadataRoutes(catalog)
  const app = createApp({
    mcp,
    defaultServer: catalog.defaultServer,
    isReady: () => ready,
    metrics: () => metrics.scrape(),
    corsOrigins: settings.allowedOrigins,
    ...(protectedResources ? { protectedResources } : {}),
  })
  return {
    app,
    pool,
    runtimes,
    metrics,
    drain: () => {
      ready = false
    },
    endStreams: () => mcp.drainStreams(),
    close: async () => {
      ready = false
      await pool.close()
      await Promise.all(Object.values(runtimes).map((runtime) => runtime.close()))
      await metrics.shutdown()
    },
  }
}

export interface RunningBridge {
  bridge: Bridge
  server: ServerType
  port: number
  /** Drains and stops: no new connections, in-flight requests get `shutdownGrace`. */
  stop(): Promise<void>
}

export const serveBridge = async (options: BridgeOptions): Promise<RunningBridge> => {
  const { catalog, logger } = options
  const bridge = createBridge(options)
  const { host, port: wantedPort, shutdownGrace } = catalog.bridge
  let server!: ServerType
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: bridge.app.fetch, hostname: host, port: wantedPort }, (info) =>
      resolve(info.port)
    )
    server.once('error', reject)
  })
  logger.info({ host, port, servers: Object.keys(catalog.servers) }, 'bridge listening')
  let stopping: Promise<void> | undefined
  /**
   * Drains: `/readyz` fails at once while requests are still served for
   * `drainDelay` (load balancers stop routing here first); then open SSE responses end
   * with a `retry` hint, the listener closes, and in-flight requests get the rest of
   * `shutdownGrace` to finish. Sessions are untouched: they live in their sidecars.
   */
  const stop = () =>
    (stopping ??= (async () => {
      const started = Date.now()
      bridge.drain()
      const { drainDelay } = catalog.bridge
      await new Promise<void>((resolve) =>
        setTimeout(resolve, Math.min(drainDelay, shutdownGrace)).unref()
      )
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      bridge.endStreams()
      // Keep-alive sockets go idle one by one as their last response ends; close them as they do.
      const idle = setInterval(() => {
        if ('closeIdleConnections' in server) server.closeIdleConnections()
      }, 50)
      const left = Math.max(0, shutdownGrace - (Date.now() - started))
      const grace = new Promise<void>((resolve) => setTimeout(resolve, left).unref())
      await Promise.race([closed, grace])
      clearInterval(idle)
      if ('closeAllConnections' in server) server.closeAllConnections()
      await bridge.close()
      logger.info({ ms: Date.now() - started }, 'bridge stopped')
    })())
  return { bridge, server, port, stop }
}
