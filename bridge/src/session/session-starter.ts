/**
 * @module
 * Session start: an `initialize` without a session id asks the server's runtime
 * for a workload, waits (within the start timeout) until its sidecar accepts a
 * connection, forwards the `initialize`, and answers with a freshly minted session
 * id. Any failure is a JSON-RPC error on the `initialize` with the reason, no
 * session id, and the workload removed.
 */
import {
  type JSONRPCRequest,
  type Logger,
  type ServerConfig,
  ErrorCode,
  errorResponse,
} from '@ferry/shared'
import type { ConnectionPool } from '../relay/connection-pool.ts'
import type { SidecarConnection } from '../relay/sidecar-connection.ts'
import type { SessionRuntime } from '../runtime/runtime.ts'
import { WorkloadStartError } from '../runtime/runtime.ts'
import type { SessionDirectory } from './session-directory.ts'
import type { SessionClaims } from './token.ts'
import { SSE_HEADERS } from '../transport/sse-stream.ts'

export interface SessionStarterOptions {
  servers: Record<string, ServerConfig>
  runtimes: Record<string, SessionRuntime>
  directory: SessionDirectory
  pool: ConnectionPool
  /** Sessions this replica may have running at once (0 = no limit). */
  maxSessions: number
  logger: Logger
}

const SESSION_ID_HEADER = 'mcp-session-id'

export class SessionStarter {
  private readonly options: SessionStarterOptions
  private starting = 0

  constructor(options: SessionStarterOptions) {
    this.options = options
  }

  async initialize(
    serverName: string,
    request: JSONRPCRequest,
    body: string,
    clientSignal: AbortSignal
  ): Promise<Response> {
    const { servers, runtimes, directory, pool, maxSessions, logger } = this.options
    const server = servers[serverName]!
    const runtime = runtimes[server.runtime]!
    const reply = (
      code: number,
      message: string,
      status = 200,
      headers: Record<string, string> = {}
    ) =>
      new Response(JSON.stringify(errorResponse(request.id, code, message)), {
        status,
        headers: { 'content-type': 'application/json', ...headers },
      })
    if (maxSessions > 0 && runtime.activeSessions() + this.starting >= maxSessions) {
      return reply(
        ErrorCode.ServerError,
        `Too many sessions: this bridge runs at most ${maxSessions} at once`,
        429,
        { 'retry-after': '5' }
      )
    }
    const { sessionName, secret } = await directory.newSession()
    const log = logger.child({ session: sessionName, server: serverName })
    const timeout = new AbortController()
    const timer = setTimeout(
      () =>
        timeout.abort(
          new WorkloadStartError(
            'timeout',
            `the session did not become ready within ${server.startTimeout} ms`
          )
        ),
      server.startTimeout
    )
    const signal = AbortSignal.any([timeout.signal, clientSignal])
    const started = Date.now()
    this.starting++
    let workload
    try {
      workload = await runtime.start({ sessionName, serverName, server, secret }, signal)
    } catch (error) {
      clearTimeout(timer)
      const reason = error instanceof WorkloadStartError ? error : undefined
      log.warn(
        { failure: reason?.failure ?? 'internal', error: (error as Error).message },
        'session start failed'
      )
      return reply(
        ErrorCode.ServerError,
        `Session start failed: ${reason?.message ?? 'internal error'}`
      )
    } finally {
      this.starting--
    }
    const ready = Date.now()
    const stop = () => void runtime.stop({ sessionName, ref: workload.ref }).catch(() => undefined)
    let connection: SidecarConnection
    try {
      connection = await pool.get({
        sessionName,
        address: workload.address,
        secret: async () => secret,
      })
    } catch (error) {
      clearTimeout(timer)
      stop()
      log.warn({ error: (error as Error).message }, 'session start failed: sidecar unreachable')
      return reply(ErrorCode.ServerError, `Session start failed: ${(error as Error).message}`)
    }
    const connected = Date.now()
    const events = await this.forward(connection, body, signal)
    clearTimeout(timer)
    const last = events.at(-1)
    let result: { protocolVersion?: unknown } | undefined
    try {
      const response = last?.fin
        ? (JSON.parse(last.payload) as { result?: { protocolVersion?: unknown } })
        : undefined
      result = response?.result
    } catch {
      result = undefined
    }
    if (!last?.fin || !result || typeof result.protocolVersion !== 'string') {
      this.end(connection)
      pool.markEnded(sessionName)
      stop()
      if (last?.fin)
        return new Response(last.payload, { headers: { 'content-type': 'application/json' } })
      const why = signal.aborted
        ? ((signal.reason as Error)?.message ?? 'aborted')
        : 'the MCP server did not answer initialize'
      log.warn({ why }, 'session start failed')
      return reply(ErrorCode.ServerError, `Session start failed: ${why}`)
    }
    const sessionId = await directory.mint({
      sid: sessionName,
      srv: serverName,
      rt: runtime.kind,
      addr: workload.address,
      ...(workload.ref ? { ref: workload.ref } : {}),
      pv: result.protocolVersion,
    })
    log.info(
      {
        runtime: runtime.kind,
        ms: Date.now() - started,
        readyMs: ready - started,
        connectMs: connected - ready,
        initializeMs: Date.now() - connected,
      },
      'session started'
    )
    const headers = { [SESSION_ID_HEADER]: sessionId }
    if (events.length === 1) {
      return new Response(last.payload, {
        headers: { 'content-type': 'application/json', ...headers },
      })
    }
    const sse = events.map((e) => `event: message\nid: ${e.id}\ndata: ${e.payload}\n\n`).join('')
    return new Response(sse, { headers: { ...SSE_HEADERS, ...headers } })
  }

  /** Sends `initialize` and collects what the server sends until its response. */
  private forward(
    connection: SidecarConnection,
    body: string,
    signal: AbortSignal
  ): Promise<{ id: string; payload: string; fin: boolean }[]> {
    return new Promise((resolve) => {
      const events: { id: string; payload: string; fin: boolean }[] = []
      const done = () => {
        signal.removeEventListener('abort', onAbort)
        resolve(events)
      }
      const onAbort = () => {
        connection.release(ch, true)
        done()
      }
      const ch = connection.open({ t: 'req' }, body, {
        onevent: (id, payload, fin) => {
          events.push({ id, payload, fin })
          if (fin) done()
        },
        onend: done,
        onerror: done,
        onlost: done,
      })
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  private end(connection: SidecarConnection): void {
    const ch = connection.open({ t: 'bye' }, undefined, {
      onack: () => connection.release(ch, false),
      onevent: () => undefined,
      onend: () => undefined,
      onerror: () => undefined,
      onlost: () => undefined,
    })
  }

  /** Removes a session's workload after it ended (DELETE). */
  stopWorkload(claims: SessionClaims): void {
    const runtime = this.options.runtimes[claims.rt]
    void runtime
      ?.stop({ sessionName: claims.sid, ref: claims.ref })
      .catch((error: Error) =>
        this.options.logger.warn(
          { session: claims.sid, error: error.message },
          'could not remove a workload'
        )
      )
  }
}
