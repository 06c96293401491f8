/**
 * @module
 * MCP Streamable HTTP, legacy (session) era — revisions 2025-03-26, 2025-06-18
 * and 2025-11-25 — relayed to the session's sidecar. Web-standard Request in,
 * Response out; nothing here is Node-specific and nothing is kept between requests
 * but pooled connections.
 *
 * A POSTed request is answered with JSON when the server's first message for it is
 * its response, and with an SSE stream otherwise (decided at that first message).
 */
import {
  type JSONRPCRequest,
  type Logger,
  type ServerConfig,
  ErrorCode,
  classifyMessage,
  errorResponse,
  formatEventId,
  parseEventId,
  requestStreamKey,
} from '@ferry/shared'
import { FerryHTTPError } from '../errors.ts'
import {
  DialError,
  type ChannelListener,
  type SidecarConnection,
} from '../relay/sidecar-connection.ts'
import type { ConnectionPool } from '../relay/connection-pool.ts'
import type { ResolvedSession, SessionDirectory } from '../session/session-directory.ts'
import type { SessionStarter } from '../session/session-starter.ts'
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
}

export const SESSION_HEADER = 'mcp-session-id'
/** The only revision that allows JSON-RPC batches. */
const BATCH_PROTOCOL_VERSION = '2025-03-26'
/** Most messages in one batch (the MCP TypeScript SDK's limit). */
const MAX_BATCH_SIZE = 100

const sessionNotFound = () =>
  new FerryHTTPError(404, ErrorCode.SessionNotFound, 'Session not found')

const jsonResponse = (body: string, headers?: Record<string, string>) =>
  new Response(body, { status: 200, headers: { 'content-type': 'application/json', ...headers } })

export class StreamableHTTPHandler {
  private readonly options: StreamableHTTPOptions

  constructor(options: StreamableHTTPOptions) {
    this.options = options
  }

  /** Answers one request for server `serverName`; never throws. */
  async handle(request: Request, serverName: string): Promise<Response> {
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
      switch (request.method) {
        case 'POST':
          return await this.post(request, serverName)
        case 'GET':
          return await this.get(request, serverName)
        case 'DELETE':
          return await this.delete(request, serverName)
        default:
          throw new FerryHTTPError(405, ErrorCode.InvalidRequest, 'Method Not Allowed', {
            headers: { allow: 'GET, POST, DELETE' },
          })
      }
    } catch (error) {
      if (error instanceof FerryHTTPError) return error.toResponse()
      this.options.logger.error(
        { err: (error as Error).message },
        'unexpected error in the MCP endpoint'
      )
      return new FerryHTTPError(500, ErrorCode.InternalError, 'Internal error').toResponse()
    }
  }

  /** The session a request names, checked against the server it was sent to. */
  private async session(request: Request, serverName: string): Promise<ResolvedSession> {
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
    return session
  }

  private async connect(session: ResolvedSession): Promise<SidecarConnection> {
    try {
      return await this.options.pool.get(session.target)
    } catch (error) {
      if (error instanceof DialError && error.gone) throw sessionNotFound()
      throw new FerryHTTPError(502, ErrorCode.ServerError, "Cannot reach the session's sidecar")
    }
  }

  private async post(request: Request, serverName: string): Promise<Response> {
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
    if (Array.isArray(value)) return this.relayBatch(request, serverName, value)
    const message = classifyMessage(value)
    if (!message) {
      throw new FerryHTTPError(
        400,
        ErrorCode.InvalidRequest,
        'Invalid Request: not a JSON-RPC 2.0 message'
      )
    }
    const isInitialize = message.kind === 'request' && message.message.method === 'initialize'
    if (!headers.has(SESSION_HEADER) && isInitialize) {
      return this.options.starter.initialize(
        serverName,
        message.message as JSONRPCRequest,
        body,
        request.signal
      )
    }
    const session = await this.session(request, serverName)
    if (isInitialize) {
      throw new FerryHTTPError(
        400,
        ErrorCode.InvalidRequest,
        'Invalid Request: Server already initialized'
      )
    }
    const connection = await this.connect(session)
    if (message.kind === 'request') {
      return this.relayRequest(connection, message.message, body, session, request.signal)
    }
    return this.relayMessage(connection, body)
  }

  /**
   * A JSON-RPC batch, allowed only in sessions that negotiated 2025-03-26 (batching
   * was removed in 2025-06-18). Notifications and responses are relayed first, in
   * order; requests then share one SSE stream that ends after their last response.
   */
  private async relayBatch(
    request: Request,
    serverName: string,
    batch: unknown[]
  ): Promise<Response> {
    const invalid = (why: string) =>
      new FerryHTTPError(400, ErrorCode.InvalidRequest, `Invalid Request: ${why}`)
    if (!request.headers.has(SESSION_HEADER)) throw invalid('initialize cannot be part of a batch')
    const session = await this.session(request, serverName)
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
      const answer = await this.relayMessage(connection, JSON.stringify(item))
      if (answer.status !== 202) return answer
    }
    const requests = messages.filter((m) => m.classified!.kind === 'request')
    if (requests.length === 0) return new Response(null, { status: 202 })
    const { streams } = this.options
    const sse = new SseStream({
      keepAliveMs: streams.keepAliveMs,
      maxBacklogBytes: streams.maxBacklogBytes,
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

  /** A notification or response: 202 once the sidecar has handed it to the server. */
  private relayMessage(connection: SidecarConnection, body: string): Promise<Response> {
    return new Promise((resolve) => {
      const ch = connection.open({ t: 'msg' }, body, {
        onack: () => {
          connection.release(ch, false)
          resolve(new Response(null, { status: 202 }))
        },
        onevent: () => undefined,
        onend: () => undefined,
        onerror: (code, text) =>
          resolve(
            code === 'not_running'
              ? sessionNotFound().toResponse()
              : new FerryHTTPError(
                  400,
                  ErrorCode.InvalidRequest,
                  `Invalid Request: ${text}`
                ).toResponse()
          ),
        onlost: (exit) =>
          resolve(
            exit
              ? sessionNotFound().toResponse()
              : new FerryHTTPError(
                  502,
                  ErrorCode.ServerError,
                  "Lost the connection to the session's sidecar"
                ).toResponse()
          ),
      })
    })
  }

  private relayRequest(
    connection: SidecarConnection,
    message: JSONRPCRequest,
    body: string,
    session: ResolvedSession,
    clientSignal: AbortSignal
  ): Promise<Response> {
    const { streams } = this.options
    const priming = supportsPriming(session.claims.pv)
    return new Promise((resolve) => {
      let sse: SseStream | undefined
      let settled = false
      let pollTimer: NodeJS.Timeout | undefined

      const finish = () => {
        settled = true
        clearTimeout(pollTimer)
        clientSignal.removeEventListener('abort', onAbort)
      }
      const startSse = () => {
        sse = new SseStream({
          keepAliveMs: streams.keepAliveMs,
          maxBacklogBytes: streams.maxBacklogBytes,
        })
        sse.onclose = () => {
          if (!settled) connection.release(ch, true)
          finish()
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
        finish()
      }
      const onAbort = () => {
        if (settled) return
        connection.release(ch, true)
        sse?.close()
        finish()
      }
      const listener: ChannelListener = {
        onevent: (id, payload, fin) => {
          if (!sse && fin) {
            finish()
            resolve(jsonResponse(payload))
            return
          }
          const stream = sse ?? startSse()
          stream.event(id, payload)
          if (fin) {
            finish()
            stream.close()
          }
        },
        onend: () => {
          // Cancelled by the client or taken over: nothing more will come here.
          finish()
          ;(sse ?? startSse()).close()
        },
        onerror: (code, text) => {
          if (code === 'not_running') {
            finish()
            resolve(sessionNotFound().toResponse())
          } else {
            fail(ErrorCode.InvalidRequest, `Invalid Request: ${text}`)
          }
        },
        onlost: (exit) => {
          if (!sse && exit) {
            // The session ended before this request reached the server.
            finish()
            resolve(sessionNotFound().toResponse())
            return
          }
          if (sse && priming && !exit) {
            // A primed stream is resumable while the sidecar lives; if it is gone, say so.
            const stream = sse
            finish()
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
      const ch = connection.open({ t: 'req' }, body, listener)
      clientSignal.addEventListener('abort', onAbort, { once: true })
      if (streams.pollAfterMs > 0 && priming) {
        pollTimer = setTimeout(() => {
          if (settled) return
          // SEP-1699 polling: end this connection, keep the stream; the client
          // resumes with Last-Event-ID on any replica.
          const stream = sse ?? startSse()
          connection.release(ch, true)
          finish()
          stream.close()
        }, streams.pollAfterMs)
        pollTimer.unref()
      }
    })
  }

  private async get(request: Request, serverName: string): Promise<Response> {
    checkGetAccept(request.headers.get('accept') ?? undefined)
    checkProtocolVersion(request.headers.get('mcp-protocol-version') ?? undefined)
    const session = await this.session(request, serverName)
    const connection = await this.connect(session)
    const after = request.headers.get('last-event-id') ?? undefined
    if (after !== undefined && !parseEventId(after)) {
      throw new FerryHTTPError(
        400,
        ErrorCode.InvalidRequest,
        'Bad Request: Last-Event-ID is not an event id of this session'
      )
    }
    const { streams } = this.options
    return new Promise((resolve) => {
      const sse = new SseStream({
        keepAliveMs: streams.keepAliveMs,
        maxBacklogBytes: streams.maxBacklogBytes,
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

  private async delete(request: Request, serverName: string): Promise<Response> {
    const session = await this.session(request, serverName)
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
    this.options.starter.stopWorkload(session.claims)
    return new Response(null, { status: 200 })
  }
}
