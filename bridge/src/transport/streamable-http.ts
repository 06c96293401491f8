/**
 * @module
 * MCP Streamable HTTP, legacy (session) era — revisions 2025-03-26, 2025-06-18
 * and 2025-11-25 — relayed to the session's sidecar. Web-standard Request in,
 * Response out; nothing here is Node-specific and nothing is kept between requests
 * but pooled connections.
 *
 * A POSTed request is answered with JSON when the server's first message for it is
 * its response, and with an SSE stream otherwise (decided at that first message).
 *
 * Each POSTed request or notification is an {@link Operation}: timed until its answer (the end
 * of its SSE stream when streamed) and, with tracing on, a SERVER span whose context rides in the
 * frame to the sidecar; the payload itself is relayed as the client sent it.
 */
import {
  type EventFrame,
  type JSONRPCId,
  type JSONRPCRequest,
  type Logger,
  type ServerConfig,
  ErrorCode,
  classifyMessage,
  errorResponse,
  traceLogFields,
  formatEventId,
  parseEventId,
  requestStreamKey,
} from '@ferry/shared'
import type { Authenticator } from '../auth/authenticator.ts'
import { authFailureError } from '../auth/challenge.ts'
import { type Principal, anonymousPrincipal, sameOwner } from '../auth/principal.ts'
import { resourceForRequest } from '../auth/resource-metadata.ts'
import { FerryHTTPError } from '../errors.ts'
import type { InFlightLimiter, Permit } from '../limits/in-flight.ts'
import { quotaExceededError } from '../limits/quota.ts'
import type { Keyring } from '../session/keyring.ts'
import {
  DialError,
  type ChannelListener,
  type SidecarConnection,
} from '../relay/sidecar-connection.ts'
import type { ConnectionPool } from '../relay/connection-pool.ts'
import type { ResolvedSession, SessionDirectory } from '../session/session-directory.ts'
import type { SessionStarter } from '../session/session-starter.ts'
import type { Instrumentation, Operation } from '../telemetry/operations.ts'
import {
  type OriginPolicy,
  checkContentType,
  checkGetAccept,
  checkHostAndOrigin,
  checkPostAccept,
  checkProtocolVersion,
  supportsPriming,
} from './request-checks.ts'
import { readBody } from './read-body.ts'
import { SSE_HEADERS, SseStream } from './sse-stream.ts'

export interface StreamSettings {
  keepAliveMs: number
  retryMs: number
  /** Close a long call's POST stream after this long so the client resumes (SEP-1699); 0 = never. */
  pollAfterMs: number
  /** Bytes queued for a slow SSE client before its connection is cut. */
  maxBacklogBytes: number
}

export interface StreamableHTTPOptions {
  servers: Record<string, ServerConfig>
  directory: SessionDirectory
  pool: ConnectionPool
  starter: SessionStarter
  originPolicy: OriginPolicy
  streams: StreamSettings
  /** Largest POST body in bytes. */
  bodyLimit: number
  logger: Logger
  instrumentation: Instrumentation
  /** Authenticator per server (`createCatalogAuthenticators`); a server without one is open. */
  authenticators?: Record<string, Authenticator>
  /** `bridge.publicUrl`: the base of the endpoints' canonical URIs (token audiences). */
  publicUrl?: string
  /** Checks session ownership (`sub` of the session id). */
  keyring?: Keyring
  /** `bridge.limits.maxInFlightPerSession` and `maxStreamsPerSession`, per replica. */
  limits?: { inFlight: InFlightLimiter; streams: InFlightLimiter }
}

/** Who sent a request, and which request it is. */
interface RequestContext {
  principal: Principal
  /** The endpoint's canonical URI, when its server is protected. */
  resource?: string
  requestId?: string
}

const ANONYMOUS: Principal = Object.freeze(anonymousPrincipal())

export const SESSION_HEADER = 'mcp-session-id'
/** The only revision that allows JSON-RPC batches. */
const BATCH_PROTOCOL_VERSION = '2025-03-26'
/** Most messages in one batch (the MCP TypeScript SDK's limit). */
const MAX_BATCH_SIZE = 100

const sessionNotFound = () =>
  new FerryHTTPError(404, ErrorCode.SessionNotFound, 'Session not found')

const jsonResponse = (body: string, headers?: Record<string, string>) =>
  new Response(body, { status: 200, headers: { 'content-type': 'application/json', ...headers } })

/** The frame that opens a channel for a message, with the operation's trace context if any. */
const frameFor = (t: 'req' | 'msg', operation: Operation | undefined) => {
  const trace = operation?.trace
  return trace ? { t, tp: trace.tp, ts: trace.ts } : { t }
}

export class StreamableHTTPHandler {
  private readonly options: StreamableHTTPOptions
  /** Open SSE responses, ended with a `retry` hint when the bridge drains. */
  private readonly streams = new Set<SseStream>()

  constructor(options: StreamableHTTPOptions) {
    this.options = options
  }

  /**
   * Ends every open SSE response between two events with a `retry` hint, so clients
   * resume with `Last-Event-ID` on another replica. Their streams live on in the sidecars.
   */
  drainStreams(): void {
    for (const stream of [...this.streams]) stream.drain(this.options.streams.retryMs)
  }

  /**
   * Answers one request for server `serverName` at `mcpPath` (`/mcp` or `/<server>/mcp`, the
   * path of its canonical URI); never throws. Every request is authenticated right after the
   * Host and Origin checks, before anything else looks at it.
   */
  async handle(
    request: Request,
    serverName: string,
    mcpPath = `/${serverName}/mcp`,
    requestId?: string
  ): Promise<Response> {
    try {
      if (!this.options.servers[serverName]) {
        throw new FerryHTTPError(404, ErrorCode.InvalidRequest, `Unknown MCP server: ${serverName}`)
      }
      const headers = request.headers
      checkHostAndOrigin(
        this.options.originPolicy,
        headers.get('host') ?? undefined,
        headers.get('origin') ?? undefined
      )
      const method = request.method
      if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
        throw new FerryHTTPError(405, ErrorCode.InvalidRequest, 'Method Not Allowed', {
          headers: { allow: 'GET, POST, DELETE' },
        })
      }
      const context = await this.authenticate(request, serverName, mcpPath, requestId)
      if (method === 'POST') return await this.post(request, serverName, context)
      if (method === 'GET') return await this.get(request, serverName, context)
      return await this.delete(request, serverName, context)
    } catch (error) {
      if (error instanceof FerryHTTPError) return error.toResponse()
      this.options.logger.error(
        { err: (error as Error).message, requestId },
        'unexpected error in the MCP endpoint'
      )
      return new FerryHTTPError(500, ErrorCode.InternalError, 'Internal error').toResponse()
    }
  }

  /** The principal of a request, or a 401/403/503 with the authenticator's challenge. */
  private async authenticate(
    request: Request,
    serverName: string,
    mcpPath: string,
    requestId: string | undefined
  ): Promise<RequestContext> {
    const authenticator = this.options.authenticators?.[serverName]
    if (!authenticator || authenticator.mode === 'none') {
      return { principal: ANONYMOUS, ...(requestId === undefined ? {} : { requestId }) }
    }
    const resource = resourceForRequest(request, mcpPath, this.options.publicUrl)
    const result = await authenticator.authenticate(request, resource)
    if ('failure' in result) {
      const { failure } = result
      this.options.logger.info(
        { requestId, server: serverName, status: failure.status, reason: failure.reason },
        'request refused: not authenticated'
      )
      throw authFailureError(failure)
    }
    return {
      principal: result.principal,
      resource,
      ...(requestId === undefined ? {} : { requestId }),
    }
  }

  /** Takes a per-session slot of `limiter`, or refuses with 429. */
  private permit(
    limiter: InFlightLimiter | undefined,
    sessionName: string,
    id: JSONRPCId | null = null
  ): Permit | undefined {
    if (!limiter) return undefined
    const permit = limiter.acquire(sessionName)
    if (!permit.ok) throw quotaExceededError(permit, id)
    return permit
  }

  /**
   * The session a request names, checked against the server it was sent to and owned by the
   * principal sending it. A session of another principal is answered exactly like an unknown
   * one (404), so session ids cannot be probed.
   */
  private async session(
    request: Request,
    serverName: string,
    context: RequestContext
  ): Promise<ResolvedSession> {
    const sessionId = request.headers.get(SESSION_HEADER)
    if (!sessionId) {
      throw new FerryHTTPError(
        400,
        ErrorCode.InvalidRequest,
        'Bad Request: Mcp-Session-Id header is required'
      )
    }
    const session = await this.options.directory.resolve(sessionId)
    if (!session || session.claims.srv !== serverName) throw sessionNotFound()
    const { sub } = session.claims
    const owner =
      sub === undefined
        ? context.principal.method === 'anonymous'
        : await sameOwner(sub, context.principal, this.options.keyring)
    if (!owner) {
      this.options.logger.info(
        { requestId: context.requestId, server: serverName },
        'request refused: the session belongs to another principal'
      )
      throw sessionNotFound()
    }
    return session
  }

  private async connect(session: ResolvedSession): Promise<SidecarConnection> {
    try {
      return await this.options.pool.get(session.target)
    } catch (error) {
      if (error instanceof DialError && error.gone) throw sessionNotFound()
      this.options.instrumentation.metrics.relayError('dial')
      throw new FerryHTTPError(502, ErrorCode.ServerError, "Cannot reach the session's sidecar")
    }
  }

  private async post(
    request: Request,
    serverName: string,
    context: RequestContext
  ): Promise<Response> {
    const headers = request.headers
    checkContentType(headers.get('content-type') ?? undefined)
    checkPostAccept(headers.get('accept') ?? undefined)
    checkProtocolVersion(headers.get('mcp-protocol-version') ?? undefined)
    const body = await readBody(request, this.options.bodyLimit)
    let value: unknown
    try {
      value = JSON.parse(body)
    } catch {
      throw new FerryHTTPError(400, ErrorCode.ParseError, 'Parse error: the body is not valid JSON')
    }
    if (Array.isArray(value)) return this.relayBatch(request, serverName, value, context)
    const message = classifyMessage(value)
    if (!message) {
      throw new FerryHTTPError(
        400,
        ErrorCode.InvalidRequest,
        'Invalid Request: not a JSON-RPC 2.0 message'
      )
    }
    const operation =
      message.kind === 'response'
        ? undefined
        : this.options.instrumentation.begin(message.message, headers)
    try {
      const isInitialize = message.kind === 'request' && message.message.method === 'initialize'
      if (!headers.has(SESSION_HEADER) && isInitialize) {
        return await this.options.starter.initialize(
          serverName,
          message.message as JSONRPCRequest,
          body,
          request.signal,
          operation!,
          context
        )
      }
      const session = await this.session(request, serverName, context)
      operation?.session(session.claims.sid, session.claims.pv)
      if (isInitialize) {
        throw new FerryHTTPError(
          400,
          ErrorCode.InvalidRequest,
          'Invalid Request: Server already initialized'
        )
      }
      const connection = await this.connect(session)
      if (message.kind === 'request') {
        const permit = this.permit(
          this.options.limits?.inFlight,
          session.claims.sid,
          message.message.id
        )
        return this.relayRequest(
          connection,
          message.message,
          body,
          session,
          request,
          operation!,
          context,
          permit
        )
      }
      return this.relayMessage(connection, body, operation)
    } catch (error) {
      if (error instanceof FerryHTTPError) operation?.end(String(error.code), error.message)
      else operation?.end(String(ErrorCode.InternalError))
      throw error
    }
  }

  /**
   * A JSON-RPC batch, allowed only in sessions that negotiated 2025-03-26 (batching
   * was removed in 2025-06-18). Notifications and responses are relayed first, in
   * order; requests then share one SSE stream that ends after their last response.
   */
  private async relayBatch(
    request: Request,
    serverName: string,
    batch: unknown[],
    context: RequestContext
  ): Promise<Response> {
    const invalid = (why: string) =>
      new FerryHTTPError(400, ErrorCode.InvalidRequest, `Invalid Request: ${why}`)
    if (!request.headers.has(SESSION_HEADER)) throw invalid('initialize cannot be part of a batch')
    const session = await this.session(request, serverName, context)
    if (session.claims.pv !== BATCH_PROTOCOL_VERSION) {
      throw invalid(`JSON-RPC batches are not allowed in protocol version ${session.claims.pv}`)
    }
    if (batch.length === 0 || batch.length > MAX_BATCH_SIZE) {
      throw invalid(`a batch holds 1 to ${MAX_BATCH_SIZE} messages`)
    }
    const messages = batch.map((item) => ({ item, classified: classifyMessage(item) }))
    if (messages.some((m) => !m.classified))
      throw invalid('a batch element is not a JSON-RPC message')
    if (
      messages.some(
        (m) => m.classified!.kind === 'request' && m.classified!.message.method === 'initialize'
      )
    ) {
      throw invalid('initialize cannot be part of a batch')
    }
    const connection = await this.connect(session)
    for (const { item, classified } of messages) {
      if (classified!.kind === 'request') continue
      const answer = await this.relayMessage(connection, JSON.stringify(item), undefined)
      if (answer.status !== 202) return answer
    }
    const requests = messages.filter((m) => m.classified!.kind === 'request')
    if (requests.length === 0) return new Response(null, { status: 202 })
    const { streams } = this.options
    const permits: Permit[] = []
    const releaseAll = () => {
      for (const permit of permits) permit.release()
    }
    try {
      const stream = this.permit(this.options.limits?.streams, session.claims.sid)
      if (stream) permits.push(stream)
      for (let i = 0; i < requests.length; i++) {
        const permit = this.permit(this.options.limits?.inFlight, session.claims.sid)
        if (permit) permits.push(permit)
      }
    } catch (error) {
      releaseAll()
      throw error
    }
    const sse = new SseStream({
      registry: this.streams,
      keepAliveMs: streams.keepAliveMs,
      maxBacklogBytes: streams.maxBacklogBytes,
      onstop: releaseAll,
    })
    let open = requests.length
    const channels: number[] = []
    const settle = () => {
      if (--open === 0) sse.close()
    }
    sse.onclose = () => {
      for (const ch of channels) connection.release(ch, true)
    }
    for (const { item, classified } of requests) {
      const id = (classified!.message as JSONRPCRequest).id
      const fail = (text: string) => {
        sse.event(undefined, JSON.stringify(errorResponse(id, ErrorCode.ServerError, text)))
        settle()
      }
      const ch = connection.open({ t: 'req' }, JSON.stringify(item), {
        onevent: (eventId, payload, fin) => {
          sse.event(eventId, payload)
          if (fin) settle()
        },
        onend: settle,
        onerror: (_code, text) => fail(text),
        onlost: (exit) =>
          fail(exit ? 'The session ended' : "Lost the connection to the session's sidecar"),
      })
      channels.push(ch)
    }
    return new Response(sse.body, { status: 200, headers: SSE_HEADERS })
  }

  /**
   * A notification or response: 202 once the sidecar has handed it to the server. A
   * notification's operation ends with the answer.
   */
  private relayMessage(
    connection: SidecarConnection,
    body: string,
    operation: Operation | undefined
  ): Promise<Response> {
    const { metrics } = this.options.instrumentation
    return new Promise((resolve) => {
      const answer = (error?: FerryHTTPError) => {
        if (error) operation?.end(String(error.code), error.message)
        else operation?.end()
        resolve(error ? error.toResponse() : new Response(null, { status: 202 }))
      }
      const ch = connection.open(frameFor('msg', operation), body, {
        onack: () => {
          connection.release(ch, false)
          answer()
        },
        onevent: () => undefined,
        onend: () => undefined,
        onerror: (code, text) => {
          metrics.relayError(code)
          answer(
            code === 'not_running'
              ? sessionNotFound()
              : new FerryHTTPError(400, ErrorCode.InvalidRequest, `Invalid Request: ${text}`)
          )
        },
        onlost: (exit) => {
          if (!exit) metrics.relayError('lost')
          answer(
            exit
              ? sessionNotFound()
              : new FerryHTTPError(
                  502,
                  ErrorCode.ServerError,
                  "Lost the connection to the session's sidecar"
                )
          )
        },
      })
    })
  }

  private relayRequest(
    connection: SidecarConnection,
    message: JSONRPCRequest,
    body: string,
    session: ResolvedSession,
    request: Request,
    operation: Operation,
    context: RequestContext,
    permit: Permit | undefined
  ): Promise<Response> {
    const { streams, instrumentation, logger } = this.options
    const clientSignal = request.signal
    const priming = supportsPriming(session.claims.pv)
    return new Promise((resolve) => {
      let sse: SseStream | undefined
      let settled = false
      let pollTimer: NodeJS.Timeout | undefined
      let refused = false

      /** Settles the exchange; the operation ends here, so a streamed one ends with its stream. */
      const finish = (errorType?: string, description?: string) => {
        settled = true
        clearTimeout(pollTimer)
        clientSignal.removeEventListener('abort', onAbort)
        permit?.release()
        operation.end(errorType, description)
      }
      /** Opens the SSE answer, counted against `maxStreamsPerSession` when `counted`. */
      const startSse = (counted = false): SseStream | undefined => {
        let streamPermit: Permit | undefined
        if (counted && this.options.limits) {
          const taken = this.options.limits.streams.acquire(session.claims.sid)
          if (!taken.ok) {
            // The answer would need one stream too many: cancel the request at the server.
            refused = true
            connection.release(ch, true)
            const error = quotaExceededError(taken, message.id)
            finish(String(error.code), error.message)
            resolve(error.toResponse())
            return undefined
          }
          streamPermit = taken
        }
        sse = new SseStream({
          registry: this.streams,
          keepAliveMs: streams.keepAliveMs,
          maxBacklogBytes: streams.maxBacklogBytes,
          ...(streamPermit ? { onstop: () => streamPermit.release() } : {}),
        })
        sse.onclose = () => {
          // The client went away (or fell too far behind) before the answer.
          if (settled) return
          connection.release(ch, true)
          finish('cancelled')
        }
        if (priming) sse.prime(formatEventId(requestStreamKey(message.id), 0), streams.retryMs)
        resolve(new Response(sse.body, { status: 200, headers: SSE_HEADERS }))
        return sse
      }
      const fail = (code: number, text: string) => {
        const error = JSON.stringify(errorResponse(message.id, code, text))
        if (sse) {
          sse.event(undefined, error)
          sse.close()
        } else {
          resolve(jsonResponse(error))
        }
        finish(String(code), text)
      }
      const relayFailed = (kind: string) => {
        instrumentation.metrics.relayError(kind)
        logger.warn(
          {
            session: session.claims.sid,
            server: session.claims.srv,
            request: message.id,
            requestId: context.requestId,
            kind,
            ...traceLogFields(operation.trace),
          },
          'relay failure'
        )
      }
      const onAbort = () => {
        if (settled) return
        connection.release(ch, true)
        sse?.close()
        finish('cancelled')
      }
      const listener: ChannelListener = {
        onevent: (id, payload, fin, frame: EventFrame) => {
          if (refused) return
          if (!fin) operation.link(frame)
          if (!sse && fin) {
            finish(frame.errorType)
            resolve(jsonResponse(payload))
            return
          }
          const stream = sse ?? startSse(true)
          if (!stream) return
          stream.event(id, payload)
          if (fin) {
            finish(frame.errorType)
            stream.close()
          }
        },
        onend: (reason) => {
          // Cancelled by the client or taken over: nothing more will come here.
          finish(reason === 'cancelled' ? 'cancelled' : undefined)
          ;(sse ?? startSse())!.close()
        },
        onerror: (code, text) => {
          relayFailed(code)
          if (code === 'not_running') {
            const error = sessionNotFound()
            finish(String(error.code), error.message)
            resolve(error.toResponse())
          } else {
            fail(ErrorCode.InvalidRequest, `Invalid Request: ${text}`)
          }
        },
        onlost: (exit) => {
          if (!exit) relayFailed('lost')
          if (!sse && exit) {
            // The session ended before this request reached the server.
            const error = sessionNotFound()
            finish(String(error.code), error.message)
            resolve(error.toResponse())
            return
          }
          if (sse && priming && !exit) {
            // A primed stream is resumable while the sidecar lives; if it is gone, say so.
            const stream = sse
            finish(String(ErrorCode.ServerError), "Lost the connection to the session's sidecar")
            void this.options.pool.get(session.target).then(
              () => stream.close(),
              (error: unknown) => {
                if (error instanceof DialError && error.gone) {
                  stream.event(
                    undefined,
                    JSON.stringify(
                      errorResponse(message.id, ErrorCode.ServerError, 'The session ended')
                    )
                  )
                }
                stream.close()
              }
            )
            return
          }
          fail(
            ErrorCode.ServerError,
            exit ? 'The session ended' : "Lost the connection to the session's sidecar"
          )
        },
      }
      const ch = connection.open(frameFor('req', operation), body, listener)
      clientSignal.addEventListener('abort', onAbort, { once: true })
      if (streams.pollAfterMs > 0 && priming) {
        pollTimer = setTimeout(() => {
          if (settled) return
          // SEP-1699 polling: end this connection, keep the stream; the client
          // resumes with Last-Event-ID on any replica.
          const stream = (sse ?? startSse())!
          connection.release(ch, true)
          finish()
          stream.close()
        }, streams.pollAfterMs)
        pollTimer.unref()
      }
    })
  }

  private async get(
    request: Request,
    serverName: string,
    context: RequestContext
  ): Promise<Response> {
    checkGetAccept(request.headers.get('accept') ?? undefined)
    checkProtocolVersion(request.headers.get('mcp-protocol-version') ?? undefined)
    const session = await this.session(request, serverName, context)
    const connection = await this.connect(session)
    const after = request.headers.get('last-event-id') ?? undefined
    if (after !== undefined && !parseEventId(after)) {
      throw new FerryHTTPError(
        400,
        ErrorCode.InvalidRequest,
        'Bad Request: Last-Event-ID is not an event id of this session'
      )
    }
    const permit = this.permit(this.options.limits?.streams, session.claims.sid)
    const { streams } = this.options
    return new Promise((resolve) => {
      const sse = new SseStream({
        registry: this.streams,
        keepAliveMs: streams.keepAliveMs,
        maxBacklogBytes: streams.maxBacklogBytes,
        ...(permit ? { onstop: () => permit.release() } : {}),
      })
      let open = true
      sse.onclose = () => {
        if (open) connection.release(ch, true)
        open = false
      }
      const close = () => {
        open = false
        sse.close()
      }
      const ch = connection.open({ t: 'get', after }, undefined, {
        onack: () => resolve(new Response(sse.body, { status: 200, headers: SSE_HEADERS })),
        onevent: (id, payload, fin) => {
          sse.event(id, payload)
          if (fin) close()
        },
        ongap: (missed) =>
          sse.comment(`${missed} event(s) after the requested Last-Event-ID were evicted`),
        onend: (reason) => {
          // A resumed stream that is already complete stays open but idle: closing
          // it would make clients reconnect to it forever.
          open = false
          if (reason !== 'complete') sse.close()
        },
        onerror: (code, text) => {
          open = false
          sse.close()
          resolve(
            code === 'not_running'
              ? sessionNotFound().toResponse()
              : new FerryHTTPError(
                  400,
                  ErrorCode.InvalidRequest,
                  `Bad Request: ${text}`
                ).toResponse()
          )
        },
        onlost: (exit) => {
          if (!open) return
          if (exit) {
            close()
            resolve(sessionNotFound().toResponse())
            return
          }
          sse.retry(streams.retryMs)
          close()
          resolve(
            new FerryHTTPError(
              502,
              ErrorCode.ServerError,
              "Lost the connection to the session's sidecar"
            ).toResponse()
          )
        },
      })
    })
  }

  private async delete(
    request: Request,
    serverName: string,
    context: RequestContext
  ): Promise<Response> {
    const session = await this.session(request, serverName, context)
    const connection = await this.connect(session)
    await new Promise<void>((resolve) => {
      const ch = connection.open({ t: 'bye' }, undefined, {
        onack: () => {
          connection.release(ch, false)
          resolve()
        },
        onevent: () => undefined,
        onend: () => undefined,
        onerror: () => resolve(),
        onlost: () => resolve(),
      })
    })
    this.options.pool.markEnded(session.claims.sid)
    const { claims } = session
    this.options.starter.stopWorkload({
      runtime: claims.rt,
      sessionName: claims.sid,
      ref: claims.ref,
    })
    return new Response(null, { status: 200 })
  }
}
