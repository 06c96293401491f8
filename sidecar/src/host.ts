/**
 * @module
 * The sidecar host: one process that runs many sessions side by side, for the local runtime.
 * Each session is what a dedicated sidecar runs (its own server process and process group,
 * secret, event log, idle timer and exit), and all of them share one WebSocket listener that
 * routes upgrades by the session they name. Sessions then cost a server process each instead
 * of a server and a Node sidecar, and start without booting a sidecar.
 *
 * The bridge that spawned the host drives it over the Node IPC channel
 * ({@link HostRequest} in, {@link HostEvent} out). When that channel closes (the bridge
 * stopped or restarted) the host takes no new sessions, keeps serving the ones it has, and
 * exits after the last one ends. SIGTERM/SIGINT or a `shutdown` request end every session.
 */
import type { Logger } from '@ferry/shared'
import type { SidecarSettings } from './cli.ts'
import { type RunningSidecar, runSidecar } from './sidecar.ts'
import { loadSessionTracer } from './telemetry/session-tracer.ts'
import { SidecarListener } from './ws/sidecar-listener.ts'

/** A session for the host to start. */
export interface HostedSessionSpec {
  sessionName: string
  /** Verifier of the per-session secret (see `sidecarVerifier`). */
  verifier: string
  command: string
  args: string[]
  /** Environment of the MCP server. */
  env: Record<string, string | undefined>
  cwd?: string
  settings: SidecarSettings
}

/** What the bridge asks of its host. */
export type HostRequest =
  | { t: 'start'; id: number; spec: HostedSessionSpec }
  /** End a session now (its start was abandoned, or it outlived its `bye`). */
  | { t: 'stop'; sessionName: string }
  /** End every session and exit. */
  | { t: 'shutdown' }

/** What the host tells the bridge. */
export type HostEvent =
  /** Where bridges dial: `port` on 127.0.0.1, or the Unix `socket` when it listens on one. */
  | { t: 'listening'; port: number; socket?: string }
  | { t: 'started'; id: number }
  | { t: 'failed'; id: number; error: string }
  | { t: 'ended'; sessionName: string; code: number }

export interface SidecarHostOptions {
  host: string
  port: number
  /** A Unix socket to listen on instead of `host` and `port`. */
  socket?: string
  logger: Logger
  /** Where events go (`process.send` in the host process). */
  send(event: HostEvent): void
}

/** A running host: `done` resolves once it stopped taking sessions and the last one ended. */
export interface RunningSidecarHost {
  port: number
  /** Handles one request from the bridge. */
  handle(request: HostRequest): void
  /** No more sessions will be asked for: exit once the running ones end. */
  release(): void
  /** Ends every session. */
  stop(): void
  done: Promise<void>
}

export async function runSidecarHost(options: SidecarHostOptions): Promise<RunningSidecarHost> {
  const { logger, send } = options
  const listener = new SidecarListener({
    host: options.host,
    port: options.port,
    socket: options.socket,
    logger,
  })
  const port = await listener.listen()
  const sessions = new Map<string, RunningSidecar>()
  /** Sessions starting: not in `sessions` yet, but the host must not exit under them. */
  let starting = 0
  let released = false
  let stopping = false
  let closing = false
  let resolveDone!: () => void
  const done = new Promise<void>((resolve) => (resolveDone = resolve))

  const exitIfIdle = () => {
    if ((released || stopping) && sessions.size === 0 && starting === 0 && !closing) {
      closing = true
      void listener.close().then(resolveDone)
    }
  }

  const start = async (id: number, spec: HostedSessionSpec) => {
    if (released || stopping) {
      return send({ t: 'failed', id, error: 'the sidecar host is shutting down' })
    }
    if (sessions.has(spec.sessionName)) {
      return send({ t: 'failed', id, error: `session ${spec.sessionName} already runs here` })
    }
    const { settings } = spec
    // Sessions log at the host's level: the runtime starts both with the bridge's.
    const sessionLogger = logger.child({ session: spec.sessionName })
    starting++
    try {
      const tracer = await loadSessionTracer(spec.env, {
        sessionName: spec.sessionName,
        logger: sessionLogger,
      })
      const sidecar = await runSidecar({
        command: spec.command,
        args: spec.args,
        env: spec.env,
        cwd: spec.cwd,
        sessionName: spec.sessionName,
        verifier: spec.verifier,
        host: options.host,
        port,
        listener,
        idleTimeoutMs: settings.idleTimeoutMs,
        stopGraceMs: settings.stopGraceMs,
        maxLineBytes: settings.maxLineBytes,
        maxPayload: settings.maxPayload,
        heartbeatMs: settings.heartbeatMs,
        eventLog: settings.eventLog,
        logLevel: settings.logLevel,
        logger: sessionLogger,
        tracer,
      })
      sessions.set(spec.sessionName, sidecar)
      void sidecar.done.then((code) => {
        sessions.delete(spec.sessionName)
        send({ t: 'ended', sessionName: spec.sessionName, code })
        exitIfIdle()
      })
      send({ t: 'started', id })
      // Asked to stop while this session was starting: it goes too.
      if (stopping) sidecar.stop('shutdown')
    } catch (error) {
      send({ t: 'failed', id, error: (error as Error).message })
    } finally {
      starting--
      exitIfIdle()
    }
  }

  const stop = () => {
    if (stopping) return
    stopping = true
    for (const sidecar of sessions.values()) sidecar.stop('shutdown')
    exitIfIdle()
  }

  return {
    port,
    done,
    stop,
    release: () => {
      released = true
      exitIfIdle()
    },
    handle: (request) => {
      switch (request.t) {
        case 'start':
          void start(request.id, request.spec)
          return
        case 'stop':
          sessions.get(request.sessionName)?.stop('shutdown')
          return
        case 'shutdown':
          stop()
          return
      }
    },
  }
}
