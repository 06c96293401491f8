/**
 * @module
 * Session start: an `initialize` without a session id asks the server's runtime
 * for a workload, waits (within the start timeout) until its sidecar accepts a
 * connection, forwards the `initialize`, and answers with a freshly minted session
 * id. Any failure is a JSON-RPC error on the `initialize` with the reason, no
 * session id, and the workload removed.
 *
 * Each start is timed by runtime and outcome and, with tracing on, is a span of its own inside
 * the `initialize` span, with an event per phase (`workload.ready`, `sidecar.connected`,
 * `initialize.answered`) and the failure kind and reason when it fails. Where the runtime's
 * starts are gated, a start first waits its turn (`start.admitted`), within its start timeout.
 */
import {
  type JSONRPCRequest,
  type Logger,
  type ServerConfig,
  ErrorCode,
  errorResponse,
  traceLogFields,
} from '@ferry/shared'
import { accessDeniedError, checkAccess } from '../auth/access.ts'
import { type Principal, principalHash, principalKey } from '../auth/principal.ts'
import { resourceMetadataUrl } from '../auth/resource-metadata.ts'
import { FerryHTTPError } from '../errors.ts'
import { quotaExceededError } from '../limits/quota.ts'
import {
  type SessionCounter,
  type SessionLimits,
  type SessionSlot,
  SessionCountUnavailable,
} from '../limits/session-counter.ts'
import { type StartGate, type StartTurn, StartTooLate } from '../limits/start-gate.ts'
import type { RateLimiter } from '../limits/token-bucket.ts'
import type { ConnectionPool } from '../relay/connection-pool.ts'
import type { SidecarConnection } from '../relay/sidecar-connection.ts'
import type { SessionRuntime } from '../runtime/runtime.ts'
import { WorkloadStartError } from '../runtime/runtime.ts'
import type { Keyring } from './keyring.ts'
import type { SessionDirectory } from './session-directory.ts'
import { SSE_HEADERS } from '../transport/sse-stream.ts'
import type { Instrumentation, Operation, SessionStart } from '../telemetry/operations.ts'

export interface SessionStarterOptions {
  servers: Record<string, ServerConfig>
  runtimes: Record<string, SessionRuntime>
  directory: SessionDirectory
  pool: ConnectionPool
  /** Sessions this replica may have running at once (0 = no limit). */
  maxSessions: number
  logger: Logger
  instrumentation: Instrumentation
  /** Hashes the owner into session ids (`sub`). */
  keyring: Keyring
  /**
   * Concurrent-session quotas by runtime kind (`LocalSessionCounter` for `local`,
   * `ClusterSessionCounter` for `kubernetes`); a runtime without one has none.
   */
  counters?: Record<string, SessionCounter>
  /** The limits the counters enforce: a start no limit applies to is not counted at all. */
  sessionLimits?: SessionLimits
  /** `bridge.limits.sessionRate`, per principal. */
  rate?: RateLimiter
  /**
   * How many starts boot at once, by runtime kind (`bridge.local.maxConcurrentStarts` for
   * `local`); a runtime without one starts every session at once.
   */
  gates?: Record<string, StartGate>
}

/** Who starts a session, and for which endpoint. */
export interface SessionStartAuth {
  principal: Principal
  /** The endpoint's canonical URI, for the `resource_metadata` of an access denial. */
  resource?: string
  /** The request id, for logs. */
  requestId?: string
}

/** A `local` runtime that can tell whether a session's workload still runs. */
interface RunningCheck {
  isRunning?(sessionName: string): boolean
}

/** What the server sent on the `initialize` channel. */
interface ForwardedEvent {
  id: string
  payload: string
  fin: boolean
  errorType?: string
}

const SESSION_ID_HEADER = 'mcp-session-id'

export class SessionStarter {
  private readonly options: SessionStarterOptions
  private starting = 0
  /** Quota slots of the sessions this replica started, released when they end. */
  private readonly slots = new Map<string, { slot: SessionSlot; runtime: string }>()

  constructor(options: SessionStarterOptions) {
    this.options = options
  }

  /** Starts a session for `request`; ends `operation` (the `initialize`) with the answer. */
  async initialize(
    serverName: string,
    request: JSONRPCRequest,
    body: string,
    clientSignal: AbortSignal,
    operation: Operation,
    auth: SessionStartAuth
  ): Promise<Response> {
    const { servers, runtimes, maxSessions } = this.options
    const server = servers[serverName]!
    const runtime = runtimes[server.runtime]!
    const { principal } = auth
    const refuse = (error: FerryHTTPError) => {
      operation.end(String(error.code), error.message)
      return error.toResponse()
    }
    const access = checkAccess(
      server.access,
      principal,
      auth.resource === undefined ? {} : { resourceMetadataUrl: resourceMetadataUrl(auth.resource) }
    )
    if (!access.ok) return refuse(accessDeniedError(access, request.id))
    const reply = (
      code: number,
      message: string,
      status = 200,
      headers: Record<string, string> = {}
    ) => {
      operation.end(String(code), message)
      return new Response(JSON.stringify(errorResponse(request.id, code, message)), {
        status,
        headers: { 'content-type': 'application/json', ...headers },
      })
    }
    if (maxSessions > 0 && runtime.activeSessions() + this.starting >= maxSessions) {
      return reply(
        ErrorCode.ServerError,
        `Too many sessions: this bridge runs at most ${maxSessions} at once`,
        429,
        { 'retry-after': '5' }
      )
    }
    // The anonymous principal of an unauthenticated endpoint is everyone, not one client: it is
    // exempt from the per-principal limits (sessions, start rate); every other limit applies.
    const key = principal.method === 'anonymous' ? undefined : await principalKey(principal)
    if (key !== undefined && this.options.rate) {
      const taken = this.options.rate.take(key)
      if (!taken.ok) return refuse(quotaExceededError(taken, request.id))
    }
    const { sessionName, secret } = await this.options.directory.newSession()
    const counter = this.limited(serverName, key)
      ? this.options.counters?.[runtime.kind]
      : undefined
    let slot: SessionSlot | undefined
    if (counter) {
      this.reconcile(runtime.kind)
      let acquired
      try {
        acquired = await counter.acquire({
          session: sessionName,
          server: serverName,
          ...(key === undefined ? {} : { principal: key }),
        })
      } catch (error) {
        if (!(error instanceof SessionCountUnavailable)) throw error
        this.options.logger.warn(
          { error: (error.cause as Error)?.message, requestId: auth.requestId },
          'cannot count sessions'
        )
        return refuse(
          new FerryHTTPError(
            503,
            ErrorCode.ServerError,
            'Service unavailable: the running sessions cannot be counted now',
            { headers: { 'retry-after': '5' }, id: request.id }
          )
        )
      }
      if (!acquired.ok) return refuse(quotaExceededError(acquired, request.id))
      slot = acquired
    }
    let started = false
    try {
      const response = await this.start(
        serverName,
        request,
        body,
        clientSignal,
        operation,
        auth,
        { sessionName, secret, key },
        () => (started = true)
      )
      return response
    } finally {
      if (slot) {
        if (started) this.slots.set(sessionName, { slot, runtime: runtime.kind })
        else slot.release()
      }
    }
  }

  /**
   * Whether any concurrent-session limit applies to a start, so that without limits (the
   * defaults, for the anonymous principal) a start costs no count (on Kubernetes, no listing).
   */
  private limited(serverName: string, key: string | undefined): boolean {
    const limits = this.options.sessionLimits
    if (!limits) return true
    const server = limits.servers?.[serverName] ?? limits.maxSessionsPerServer
    return (
      limits.maxSessions > 0 ||
      server > 0 ||
      (key !== undefined && limits.maxSessionsPerPrincipal > 0)
    )
  }

  /** Gives back the quota slot of a session that ended (DELETE, idle, exit). Idempotent. */
  release(sessionName: string): void {
    const entry = this.slots.get(sessionName)
    if (!entry) return
    this.slots.delete(sessionName)
    entry.slot.release()
  }

  /** Releases the slots of sessions whose workloads ended without the bridge noticing. */
  private reconcile(kind: string): void {
    const runtime = this.options.runtimes[kind] as (SessionRuntime & RunningCheck) | undefined
    if (!runtime?.isRunning) return
    for (const [name, entry] of this.slots) {
      if (entry.runtime === kind && !runtime.isRunning(name)) this.release(name)
    }
  }

  private async start(
    serverName: string,
    request: JSONRPCRequest,
    body: string,
    clientSignal: AbortSignal,
    operation: Operation,
    auth: SessionStartAuth,
    session: { sessionName: string; secret: string; key: string | undefined },
    succeeded: () => void
  ): Promise<Response> {
    const { servers, runtimes, directory, pool, logger, instrumentation } = this.options
    const server = servers[serverName]!
    const runtime = runtimes[server.runtime]!
    const { sessionName, secret } = session
    const reply = (code: number, message: string) => {
      operation.end(String(code), message)
      return new Response(JSON.stringify(errorResponse(request.id, code, message)), {
        headers: { 'content-type': 'application/json' },
      })
    }
    /** The start failed for `failure`: say why to the client, the log and the span. */
    const failed = (start: SessionStart, failure: string, why: string, fields = {}) => {
      log.warn({ failure, why, ...fields }, 'session start failed')
      start.fail(failure, why)
      return reply(ErrorCode.ServerError, `Session start failed: ${why}`)
    }
    const start = instrumentation.sessionStart(operation, serverName, runtime.kind)
    start.session(sessionName)
    operation.session(sessionName)
    const log = logger.child({
      session: sessionName,
      server: serverName,
      request: request.id,
      ...(auth.requestId === undefined ? {} : { requestId: auth.requestId }),
      ...traceLogFields(start.trace ?? operation.trace),
    })
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
    const gate = this.options.gates?.[runtime.kind]
    let turn: StartTurn | undefined
    let admitted = started
    let workload
    try {
      if (gate) {
        turn = await this.turn(gate, signal, clientSignal, serverName, server.startTimeout)
        admitted = Date.now()
        start.phase('start.admitted')
      }
      workload = await runtime.start(
        {
          sessionName,
          serverName,
          server,
          secret,
          ...(session.key === undefined ? {} : { principal: session.key }),
        },
        signal
      )
    } catch (error) {
      clearTimeout(timer)
      turn?.release(false)
      const fields = {
        error: (error as Error).message,
        ...(gate ? { queueMs: (turn ? admitted : Date.now()) - started } : {}),
      }
      if (clientSignal.aborted) return failed(start, 'cancelled', 'the client went away', fields)
      const reason = error instanceof WorkloadStartError ? error : undefined
      return failed(
        start,
        reason?.failure ?? 'internal',
        reason?.message ?? 'internal error',
        fields
      )
    } finally {
      this.starting--
    }
    start.phase('workload.ready')
    const ready = Date.now()
    try {
      const stop = () =>
        void runtime.stop({ sessionName, ref: workload.ref }).catch(() => undefined)
      let connection: SidecarConnection
      try {
        connection = await pool.get({
          sessionName,
          address: workload.address,
          workload: { runtime: runtime.kind, ...(workload.ref ? { ref: workload.ref } : {}) },
          secret: async () => secret,
        })
      } catch (error) {
        clearTimeout(timer)
        stop()
        instrumentation.metrics.relayError('dial')
        // The dial error names the sidecar's address: for the log only, never the client.
        return failed(start, 'unreachable', "the session's sidecar did not accept a connection", {
          error: (error as Error).message,
        })
      }
      start.phase('sidecar.connected')
      const connected = Date.now()
      const events = await this.forward(connection, body, signal, start)
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
        if (last?.fin) {
          // The server answered, with an error: that answer goes to the client as it is.
          log.warn({ failure: 'initialize', errorType: last.errorType }, 'session start failed')
          start.fail('initialize', 'the MCP server refused initialize')
          operation.end(last.errorType ?? String(ErrorCode.InternalError))
          return new Response(last.payload, { headers: { 'content-type': 'application/json' } })
        }
        if (!signal.aborted)
          return failed(start, 'initialize', 'the MCP server did not answer initialize')
        const reason = signal.reason
        return reason instanceof WorkloadStartError
          ? failed(start, reason.failure, reason.message)
          : failed(start, 'cancelled', (reason as Error)?.message ?? 'aborted')
      }
      const sessionId = await directory.mint({
        sid: sessionName,
        srv: serverName,
        rt: runtime.kind,
        addr: workload.address,
        ...(workload.ref ? { ref: workload.ref } : {}),
        pv: result.protocolVersion,
        ...(auth.principal.method === 'anonymous'
          ? {}
          : { sub: await principalHash(auth.principal, this.options.keyring) }),
      })
      log.info(
        {
          runtime: runtime.kind,
          ms: Date.now() - started,
          ...(gate ? { queueMs: admitted - started } : {}),
          readyMs: ready - admitted,
          connectMs: connected - ready,
          initializeMs: Date.now() - connected,
        },
        'session started'
      )
      turn?.release(true)
      start.phase('initialize.answered')
      start.succeed()
      succeeded()
      operation.session(sessionName, result.protocolVersion)
      operation.end()
      const headers = { [SESSION_ID_HEADER]: sessionId }
      if (events.length === 1) {
        return new Response(last.payload, {
          headers: { 'content-type': 'application/json', ...headers },
        })
      }
      const sse = events.map((e) => `event: message\nid: ${e.id}\ndata: ${e.payload}\n\n`).join('')
      return new Response(sse, { headers: { ...SSE_HEADERS, ...headers } })
    } finally {
      turn?.release(false)
    }
  }

  /**
   * A turn at `gate` for a start, or the reason there is none as the start's failure: no turn
   * before the start timeout, or one too late to boot the server in what was left of it.
   */
  private async turn(
    gate: StartGate,
    signal: AbortSignal,
    clientSignal: AbortSignal,
    serverName: string,
    timeoutMs: number
  ): Promise<StartTurn> {
    const asked = Date.now()
    try {
      return await gate.acquire(signal, { server: serverName, deadline: asked + timeoutMs })
    } catch (error) {
      if (clientSignal.aborted) throw error
      const limit = `bridge.local.maxConcurrentStarts: ${gate.limit}`
      throw new WorkloadStartError(
        'capacity',
        error instanceof StartTooLate
          ? `waited ${Date.now() - asked} ms for a turn to start (${limit}); a start of this server takes about ${error.typicalMs} ms, more than was left of its ${timeoutMs} ms start timeout, so the server was not started`
          : `no turn to start within the ${timeoutMs} ms start timeout: other sessions' starts held every slot (${limit}), so the server was not started`
      )
    }
  }

  /** Sends `initialize` and collects what the server sends until its response. */
  private forward(
    connection: SidecarConnection,
    body: string,
    signal: AbortSignal,
    start: SessionStart
  ): Promise<ForwardedEvent[]> {
    return new Promise((resolve) => {
      const events: ForwardedEvent[] = []
      const done = () => {
        signal.removeEventListener('abort', onAbort)
        resolve(events)
      }
      const onAbort = () => {
        connection.release(ch, true)
        done()
      }
      const trace = start.trace
      const ch = connection.open(
        trace ? { t: 'req', tp: trace.tp, ts: trace.ts } : { t: 'req' },
        body,
        {
          onevent: (id, payload, fin, frame) => {
            events.push({ id, payload, fin, errorType: frame.errorType })
            if (fin) done()
          },
          onend: done,
          onerror: done,
          onlost: done,
        }
      )
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
  stopWorkload(workload: {
    runtime: string
    sessionName: string
    ref?: Record<string, string>
  }): void {
    this.release(workload.sessionName)
    const runtime = this.options.runtimes[workload.runtime]
    void runtime
      ?.stop({ sessionName: workload.sessionName, ref: workload.ref })
      .catch((error: Error) =>
        this.options.logger.warn(
          { session: workload.sessionName, error: error.message },
          'could not remove a workload'
        )
      )
  }
}
