/**
 * @module
 * Assembles a bridge from a catalog and a keyring: runtimes, connection pool,
 * session directory, the MCP handler and the Hono app. `serveBridge` puts it on a
 * Node HTTP server and handles draining on shutdown.
 */
import { serve, type ServerType } from '@hono/node-server'
import type { Hono } from 'hono'
import type { Catalog, Logger } from '@ferry/shared'
import { createApp } from './app.ts'
import { ConnectionPool } from './relay/connection-pool.ts'
import { KubernetesRuntime } from './runtime/kubernetes/kubernetes-runtime.ts'
import { LocalRuntime } from './runtime/local-runtime.ts'
import type { SessionRuntime } from './runtime/runtime.ts'
import type { Keyring } from './session/keyring.ts'
import { SessionDirectory } from './session/session-directory.ts'
import { SessionStarter } from './session/session-starter.ts'
import { createOriginPolicy } from './transport/request-checks.ts'
import { StreamableHTTPHandler } from './transport/streamable-http.ts'

export interface BridgeOptions {
  catalog: Catalog
  keyring: Keyring
  logger: Logger
  /** Runtimes by kind; the local runtime is created when not given. */
  runtimes?: Record<string, SessionRuntime>
}

export interface Bridge {
  app: Hono
  pool: ConnectionPool
  runtimes: Record<string, SessionRuntime>
  /** Marks the bridge as draining (`/readyz` fails). */
  drain(): void
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
      logger: logger.child({ runtime: 'kubernetes' }),
    })
  }
  return runtimes
}

/** Bytes an SSE client may fall behind before its connection is cut (it can resume). */
const MAX_SSE_BACKLOG = 8 * 1024 * 1024

export const createBridge = (options: BridgeOptions): Bridge => {
  const { catalog, keyring, logger } = options
  const settings = catalog.bridge
  const runtimes = options.runtimes ?? defaultRuntimes(catalog, logger)
  const pool = new ConnectionPool({
    dialTimeoutMs: settings.connection.dialTimeout,
    idleCloseMs: settings.connection.idleClose,
    maxPayload: settings.connection.maxPayload,
    heartbeatMs: settings.connection.heartbeat,
  })
  const directory = new SessionDirectory({ keyring, maxAgeSeconds: settings.sessionMaxAge / 1000 })
  const starter = new SessionStarter({
    servers: catalog.servers,
    runtimes,
    directory,
    pool,
    maxSessions: settings.maxSessions,
    logger,
  })
  const mcp = new StreamableHTTPHandler({
    servers: catalog.servers,
    directory,
    pool,
    starter,
    logger,
    originPolicy: createOriginPolicy(settings),
    bodyLimit: settings.bodyLimit,
    streams: {
      keepAliveMs: settings.sse.keepAlive,
      retryMs: settings.sse.retry,
      pollAfterMs: settings.sse.pollAfter,
      maxBacklogBytes: MAX_SSE_BACKLOG,
    },
  })
  let ready = true
  const app = createApp({
    mcp,
    defaultServer: catalog.defaultServer,
    isReady: () => ready,
  })
  return {
    app,
    pool,
    runtimes,
    drain: () => {
      ready = false
    },
    close: async () => {
      ready = false
      await pool.close()
      await Promise.all(Object.values(runtimes).map((runtime) => runtime.close()))
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
  const stop = () =>
    (stopping ??= (async () => {
      bridge.drain()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      const grace = new Promise<void>((resolve) => setTimeout(resolve, shutdownGrace).unref())
      await Promise.race([closed, grace])
      if ('closeAllConnections' in server) server.closeAllConnections()
      await bridge.close()
      logger.info({}, 'bridge stopped')
    })())
  return { bridge, server, port, stop }
}
