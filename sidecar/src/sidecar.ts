/**
 * @module
 * Runs one session: starts the MCP server, serves bridges over WebSocket, and ends
 * the whole thing when the session is deleted, idles out, the server exits or the
 * process is asked to stop. The sidecar's exit code is 0 when Ferry ended the
 * session and the server's own code when the server ended it, so a Kubernetes Job
 * records a crash as a failure.
 */
import { createWriteStream } from 'node:fs'
import { type LogLevel, type Logger, createLogger } from '@ferry/shared'
import { EventLog, type EventLogLimits } from './session/event-log.ts'
import { SidecarSession, type BridgePeer, type SessionEnd } from './session/sidecar-session.ts'
import { SidecarServer } from './ws/sidecar-server.ts'
import type { SidecarListener } from './ws/sidecar-listener.ts'
import { StdioServerProcess, type ServerExit } from './stdio/server-process.ts'
import type { SessionTracer } from './telemetry/session-tracer.ts'

export interface SidecarOptions {
  command: string
  args: string[]
  /** Environment of the MCP server (without Ferry's secrets). */
  env: Record<string, string | undefined>
  cwd?: string
  sessionName: string
  /** Verifier of the per-session secret (see `sidecarVerifier`). */
  verifier: string
  host: string
  port: number
  /** A listener shared with other sessions (the sidecar host); `host` and `port` are then unused. */
  listener?: SidecarListener
  idleTimeoutMs: number
  stopGraceMs: number
  maxLineBytes: number
  maxPayload: number
  heartbeatMs: number
  eventLog: EventLogLimits
  /** File descriptor to write `{"port":N}` to once listening (the local runtime's pipe). */
  readyFd?: number
  logLevel: LogLevel
  logger?: Logger
  /** Traces the session's messages; flushed before `done` resolves. */
  tracer?: SessionTracer
}

/** Outbound bytes queued on a bridge connection before the server's output pauses. */
const HIGH_WATER_MARK = 8 * 1024 * 1024
/** How long exporting the last spans may hold up the sidecar's exit. */
const TRACE_FLUSH_MS = 2000

const describeExit = (exit: ServerExit) =>
  exit.error ??
  (exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code ?? 'unknown'}`)

const endDetail: Record<SessionEnd['reason'], string> = {
  deleted: 'The session was deleted',
  idle: 'The session ended after being idle',
  shutdown: 'The session was stopped',
  server_exit: 'The MCP server exited',
}

/**
 * Server processes still running in this process. They run detached in their own process
 * groups, so a sidecar that dies without stopping them (an uncaught exception,
 * `process.exit`) would leave them running: the exit event is the last, synchronous, chance
 * to take their groups down. One hook serves every session a sidecar host runs.
 */
const liveServers = new Set<StdioServerProcess>()
const killLiveServers = () => {
  for (const server of liveServers) {
    if (server.pid === undefined || server.exited) continue
    try {
      process.kill(-server.pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
}

/** A running sidecar; `done` resolves with the exit code the process should use. */
export interface RunningSidecar {
  port: number
  done: Promise<number>
  stop(reason: SessionEnd['reason']): void
}

export async function runSidecar(options: SidecarOptions): Promise<RunningSidecar> {
  const logger =
    options.logger ??
    createLogger({ name: 'sidecar', level: options.logLevel }).child({
      session: options.sessionName,
    })
  const server = new StdioServerProcess({
    command: options.command,
    args: options.args,
    env: options.env,
    cwd: options.cwd,
    maxLineBytes: options.maxLineBytes,
    stopGraceMs: options.stopGraceMs,
    logger,
  })
  const network = new SidecarServer({
    sessionName: options.sessionName,
    verifier: options.verifier,
    host: options.host,
    port: options.port,
    listener: options.listener,
    maxPayload: options.maxPayload,
    heartbeatMs: options.heartbeatMs,
    highWaterMark: HIGH_WATER_MARK,
    logger,
  })
  const log = new EventLog<{ peer: BridgePeer; ch: number }>(options.eventLog)
  const session = new SidecarSession({
    log,
    logger,
    idleTimeoutMs: options.idleTimeoutMs,
    tracer: options.tracer,
    server: {
      send: (line) => {
        const ok = server.send(line)
        if (!ok) network.pauseInput()
        return ok
      },
    },
  })

  let resolveDone!: (code: number) => void
  const done = new Promise<number>((resolve) => (resolveDone = resolve))
  let finishing = false
  // Assigned once listening; finish() may run before that and must see undefined.
  let timer: NodeJS.Timeout | undefined = undefined

  const finish = async (end: SessionEnd, exit: ServerExit) => {
    clearInterval(timer)
    const detail =
      end.reason === 'server_exit'
        ? `${endDetail.server_exit} (${describeExit(exit)})`
        : endDetail[end.reason]
    session.close({ ...end, code: exit.code, signal: exit.signal }, detail)
    logger.info({ reason: end.reason, code: exit.code, signal: exit.signal }, 'session ended')
    await network.close()
    await options.tracer?.shutdown(TRACE_FLUSH_MS)
    resolveDone(end.reason === 'server_exit' ? (exit.code ?? 1) : 0)
  }

  const stop = (reason: SessionEnd['reason']) => {
    if (finishing) return
    finishing = true
    logger.info({ reason }, 'stopping the MCP server')
    void server.stop(reason).then((exit) => finish({ reason }, exit))
  }

  server.onmessage = (line) => session.handleServerLine(line)
  server.onoversize = (bytes) =>
    logger.warn(
      { bytes, limit: options.maxLineBytes },
      'skipped a server output line over the limit'
    )
  server.ondrain = () => network.resumeInput()
  server.onexit = (exit) => {
    if (finishing) return
    finishing = true
    logger.warn({ code: exit.code, signal: exit.signal }, 'the MCP server exited')
    void finish({ reason: 'server_exit' }, exit)
  }
  session.onend = (end) => stop(end.reason)

  await server.start()
  if (liveServers.size === 0) process.on('exit', killLiveServers)
  liveServers.add(server)
  const forget = () => {
    liveServers.delete(server)
    if (liveServers.size === 0) process.off('exit', killLiveServers)
  }
  void done.then(forget)

  let port: number
  try {
    port = await network.listen({
      onpeer: (peer) => session.addPeer(peer),
      onframe: (peer, frame) => session.handleBridgeFrame(peer, frame),
      onpeerclose: (peer) => session.removePeer(peer),
      onbackpressure: (paused) => (paused ? server.pauseOutput() : server.resumeOutput()),
    })
  } catch (error) {
    finishing = true
    await server.stop('the sidecar cannot listen')
    forget()
    throw error
  }
  const tick = Math.max(50, Math.min(1000, Math.floor(options.idleTimeoutMs / 4)))
  timer = setInterval(() => {
    log.evict()
    session.endIfIdle()
  }, tick)
  timer.unref()

  logger.info({ host: options.host, port, command: options.command }, 'sidecar listening')
  if (options.readyFd !== undefined) {
    const ready = createWriteStream('', { fd: options.readyFd })
    ready.end(`${JSON.stringify({ port })}\n`)
    ready.on('error', () => undefined)
  }
  return { port, done, stop }
}
