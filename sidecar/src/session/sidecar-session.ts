/**
 * @module
 * The session's state and its routing rules. The sidecar owns everything that
 * makes a session stateful, so any bridge replica can serve any request: the
 * server process, which stream each pending request belongs to, and the event log.
 *
 * Server → client routing (each message goes on exactly one stream, none is dropped
 * silently):
 * - a response goes to the stream of its request;
 * - `notifications/progress` goes to the stream of the request that declared the
 *   token; `notifications/cancelled` to the stream of the request it names;
 * - anything else goes to the single in-flight request's stream when exactly one
 *   is in flight, else to the standalone stream, where it is held in the log until
 *   a GET stream takes it.
 *
 * With a tracer, each client request or notification gets a span whose context replaces
 * `params._meta.traceparent` / `tracestate` in what the server reads, and each server request or
 * notification gets a span whose context rides back in its `ev` frame. Without one, messages go
 * through untouched — unless the bridge traced them (`tp` on the frame), in which case the server
 * still gets the bridge's context in `_meta`.
 */
import {
  type BridgeFrameHeader,
  type EventFrame,
  type ExitFrame,
  type ExitReason,
  type Frame,
  type JSONRPCId,
  type JSONRPCNotification,
  type JSONRPCRequest,
  type JSONRPCResponse,
  type Logger,
  type SidecarFrameHeader,
  type TraceFields,
  ErrorCode,
  STANDALONE_STREAM,
  classifyMessage,
  errorResponse,
  formatEventId,
  parseEventId,
  progressTokenOf,
  requestIdOfStream,
  requestStreamKey,
  responseErrorType,
  traceContextOf,
  traceLogFields,
  withTraceContext,
} from '@ferry/shared'
import type { EventLog, LoggedStream } from './event-log.ts'
import { serializeLine } from '../stdio/ndjson.ts'
import type { MessageSpan, SessionTracer } from '../telemetry/session-tracer.ts'

/** One bridge connection, as the session sees it. */
export interface BridgePeer {
  readonly id: number
  send(header: SidecarFrameHeader, payload?: string): void
}

interface Listener {
  readonly peer: BridgePeer
  readonly ch: number
}

type Stream = LoggedStream<Listener>

/** How the session reaches the MCP server process. */
export interface ServerPort {
  /** Writes one serialized line; false when the pipe is full; throws when the server is not running. */
  send(line: string): boolean
}

export interface SidecarSessionOptions {
  log: EventLog<Listener>
  server: ServerPort
  logger: Logger
  /** End the session after this long with no client message and no request in flight. */
  idleTimeoutMs: number
  /** Traces each relayed message when given. */
  tracer?: SessionTracer
  now?: () => number
}

export interface SessionEnd {
  reason: ExitReason
  code?: number | null
  signal?: string | null
}

const idKey = (id: JSONRPCId) => (typeof id === 'number' ? `n${id}` : `s${id}`)

/** What the sidecar sends with a live event beyond its id. */
interface EventExtras {
  /** `error.type` of the response that completes the stream. */
  errorType?: string
  /** The span of the server message. */
  trace?: TraceFields
}

export class SidecarSession {
  private readonly log: EventLog<Listener>
  private readonly server: ServerPort
  private readonly logger: Logger
  private readonly idleTimeoutMs: number
  private readonly tracer: SessionTracer | undefined
  private readonly now: () => number
  private readonly startedAt: number
  private readonly standalone: Stream
  /** Client requests awaiting their response, by stream key. */
  private readonly pending = new Map<string, Stream>()
  private readonly progress = new Map<string, Stream>()
  /** Server → client requests, by id, and the stream they went on. */
  private readonly serverRequests = new Map<string, Stream>()
  private readonly peers = new Set<BridgePeer>()
  /** Spans of client requests awaiting their response (by stream key), when tracing. */
  private readonly requestSpans = new Map<string, MessageSpan>()
  /** Spans of server requests awaiting the client's response (by id), when tracing. */
  private readonly serverRequestSpans = new Map<string, MessageSpan>()
  /** Events evicted from the log and not yet reported to a bridge. */
  private unreportedEvictions = 0
  private lastActivity: number
  private ended: SessionEnd | undefined

  /** Called once when the session must end (deleted or idle); the owner stops the server. */
  onend?: (end: SessionEnd) => void

  constructor(options: SidecarSessionOptions) {
    this.log = options.log
    this.server = options.server
    this.logger = options.logger
    this.idleTimeoutMs = options.idleTimeoutMs
    this.tracer = options.tracer
    this.now = options.now ?? Date.now
    this.startedAt = this.lastActivity = this.now()
    this.standalone = this.log.open(STANDALONE_STREAM)
    this.log.onevict = (count) => (this.unreportedEvictions += count)
  }

  get inFlight(): number {
    return this.pending.size
  }

  addPeer(peer: BridgePeer): void {
    this.peers.add(peer)
  }

  /** A bridge connection closed: its channels stop listening; their streams keep logging. */
  removePeer(peer: BridgePeer): void {
    this.peers.delete(peer)
    for (const stream of [this.standalone, ...this.pending.values()]) {
      if (stream.listener?.peer === peer) stream.listener = undefined
    }
  }

  /** True when the idle timeout has passed with nothing in flight. */
  isIdle(): boolean {
    return this.pending.size === 0 && this.now() - this.lastActivity >= this.idleTimeoutMs
  }

  handleBridgeFrame(peer: BridgePeer, frame: Frame<BridgeFrameHeader>): void {
    const { header, payload } = frame
    if (this.ended) {
      if (header.t !== 'detach') {
        peer.send({ t: 'err', ch: header.ch, code: 'not_running', message: 'session has ended' })
      }
      return
    }
    switch (header.t) {
      case 'req':
        return this.acceptRequest(peer, header, payload)
      case 'msg':
        return this.acceptMessage(peer, header, payload)
      case 'get':
        this.lastActivity = this.now()
        return this.attach(peer, header.ch, header.after)
      case 'detach':
        return this.detach(peer, header.ch)
      case 'bye':
        peer.send({ t: 'ack', ch: header.ch })
        this.requestEnd({ reason: 'deleted' })
        return
    }
  }

  private parseClientMessage(peer: BridgePeer, ch: number, payload: string | undefined) {
    let value: unknown
    try {
      value = payload === undefined ? undefined : JSON.parse(payload)
    } catch {
      value = undefined
    }
    const classified = classifyMessage(value)
    if (!classified) {
      peer.send({ t: 'err', ch, code: 'bad_message', message: 'not a JSON-RPC message' })
    }
    return classified
  }

  private acceptRequest(
    peer: BridgePeer,
    header: { ch: number } & TraceFields,
    payload: string | undefined
  ): void {
    const ch = header.ch
    const classified = this.parseClientMessage(peer, ch, payload)
    if (!classified) return
    if (classified.kind !== 'request') {
      peer.send({ t: 'err', ch, code: 'bad_message', message: 'expected a request' })
      return
    }
    const request = classified.message
    const key = requestStreamKey(request.id)
    const existing = this.log.stream(key)
    if (existing && !existing.complete) {
      peer.send({
        t: 'err',
        ch,
        code: 'duplicate_id',
        message: `request id ${JSON.stringify(request.id)} is already in flight in this session`,
      })
      return
    }
    const span = this.tracer?.clientMessage(request, header.tp ? header : traceContextOf(request))
    const line = this.lineFor(request, header, payload!, span)
    if (!this.writeToServer(peer, ch, line, request.id, span?.context ?? header)) {
      span?.end('not_running')
      return
    }
    const stream = existing ? this.log.reopen(existing) : this.log.open(key)
    stream.listener = { peer, ch }
    this.pending.set(key, stream)
    if (span) this.requestSpans.set(key, span)
    const token = progressTokenOf(request)
    if (token !== undefined) this.progress.set(idKey(token), stream)
    this.lastActivity = this.now()
  }

  private acceptMessage(
    peer: BridgePeer,
    header: { ch: number } & TraceFields,
    payload: string | undefined
  ): void {
    const ch = header.ch
    const classified = this.parseClientMessage(peer, ch, payload)
    if (!classified) return
    if (classified.kind === 'request') {
      peer.send({ t: 'err', ch, code: 'bad_message', message: 'requests open a stream' })
      return
    }
    if (classified.kind === 'response') {
      if (!this.writeToServer(peer, ch, payload!)) return
      const id = classified.message.id
      if (id !== null) {
        this.serverRequests.delete(idKey(id))
        this.endServerRequestSpan(idKey(id), classified.message)
      }
    } else {
      const notification = classified.message
      const span = this.tracer?.clientMessage(
        notification,
        header.tp ? header : traceContextOf(notification)
      )
      const written = this.writeToServer(
        peer,
        ch,
        this.lineFor(notification, header, payload!, span)
      )
      span?.end(written ? undefined : 'not_running')
      if (!written) return
      if (notification.method === 'notifications/cancelled') this.cancelledByClient(notification)
    }
    this.lastActivity = this.now()
    peer.send({ t: 'ack', ch })
  }

  /** The client gave up on a request: no response will come, so its stream is over. */
  private cancelledByClient(notification: JSONRPCNotification): void {
    const id = notification.params?.requestId
    if (typeof id !== 'string' && typeof id !== 'number') return
    const stream = this.pending.get(requestStreamKey(id))
    if (!stream) return
    this.endRequestSpan(stream.key, 'cancelled')
    this.complete(stream)
    const listener = stream.listener
    stream.listener = undefined
    listener?.peer.send({ t: 'end', ch: listener.ch, reason: 'cancelled' })
    this.log.release(stream)
  }

  /**
   * The line the server reads for a client request or notification: its payload as sent, or, when
   * it is traced (here or by the bridge), with that span's context in `params._meta`.
   */
  private lineFor(
    message: JSONRPCRequest | JSONRPCNotification,
    frame: TraceFields,
    payload: string,
    span: MessageSpan | undefined
  ): string {
    const context = span?.context ?? (frame.tp ? { tp: frame.tp, ts: frame.ts } : undefined)
    return context ? JSON.stringify(withTraceContext(message, context)) : payload
  }

  private endRequestSpan(key: string, outcome: JSONRPCResponse | string): void {
    const span = this.requestSpans.get(key)
    if (!span) return
    this.requestSpans.delete(key)
    span.end(outcome)
  }

  private endServerRequestSpan(key: string, outcome: JSONRPCResponse | string): void {
    const span = this.serverRequestSpans.get(key)
    if (!span) return
    this.serverRequestSpans.delete(key)
    span.end(outcome)
  }

  /**
   * Writes a client message to the server, or answers `not_running` when the server is
   * already exiting or stopping (the session is about to end) and returns false.
   */
  private writeToServer(
    peer: BridgePeer,
    ch: number,
    payload: string,
    request?: JSONRPCId,
    trace?: TraceFields
  ): boolean {
    try {
      // The server reads newline-delimited JSON; a multi-line body must become one line.
      this.server.send(serializeLine(payload))
      return true
    } catch (error) {
      this.logger.warn(
        {
          error: (error as Error).message,
          ...(request === undefined ? {} : { request }),
          ...traceLogFields(trace),
        },
        'refused a message: server not running'
      )
      peer.send({ t: 'err', ch, code: 'not_running', message: 'the MCP server is not running' })
      return false
    }
  }

  /** Answers `ack` (or `err` for an id that is not ours), then replays, then goes live. */
  private attach(peer: BridgePeer, ch: number, after: string | undefined): void {
    if (after === undefined) {
      peer.send({ t: 'ack', ch })
      return this.attachListener(this.standalone, peer, ch, this.standalone.delivered)
    }
    const cursor = parseEventId(after)
    if (!cursor) {
      peer.send({
        t: 'err',
        ch,
        code: 'unknown_stream',
        message: `Last-Event-ID ${after} is not an event id of this session`,
      })
      return
    }
    peer.send({ t: 'ack', ch })
    const stream = this.log.stream(cursor.stream)
    if (stream) return this.attachListener(stream, peer, ch, cursor.seq)
    // A finished stream whose events were all evicted: its key still names the
    // request, so the client gets a definite answer instead of waiting forever.
    const requestId = requestIdOfStream(cursor.stream)!
    const message = errorResponse(
      requestId,
      ErrorCode.ServerError,
      "The response to this request is no longer in the session's event log"
    )
    peer.send({ t: 'gap', ch, missed: 1 })
    peer.send(
      { t: 'ev', ch, id: formatEventId(cursor.stream, cursor.seq + 1), fin: 1 },
      JSON.stringify(message)
    )
  }

  private attachListener(stream: Stream, peer: BridgePeer, ch: number, afterSeq: number): void {
    const previous = stream.listener
    if (previous && (previous.peer !== peer || previous.ch !== ch)) {
      previous.peer.send({ t: 'end', ch: previous.ch, reason: 'takeover' })
    }
    const { events, missed } = stream.after(afterSeq)
    if (missed > 0) peer.send({ t: 'gap', ch, missed })
    for (const event of events)
      this.sendEvent(peer, ch, stream, event.seq, event.payload, event.fin)
    if (stream.complete) {
      stream.listener = undefined
      if (!events.some((event) => event.fin)) peer.send({ t: 'end', ch, reason: 'complete' })
      return
    }
    stream.listener = { peer, ch }
  }

  private detach(peer: BridgePeer, ch: number): void {
    for (const stream of [this.standalone, ...this.pending.values()]) {
      if (stream.listener?.peer === peer && stream.listener.ch === ch) stream.listener = undefined
    }
  }

  private sendEvent(
    peer: BridgePeer,
    ch: number,
    stream: Stream,
    seq: number,
    payload: string,
    fin: boolean,
    extras?: EventExtras
  ): void {
    const id = formatEventId(stream.key, seq)
    const header: EventFrame = fin ? { t: 'ev', ch, id, fin: 1 } : { t: 'ev', ch, id }
    if (extras?.errorType !== undefined) header.errorType = extras.errorType
    if (extras?.trace) {
      header.tp = extras.trace.tp
      if (extras.trace.ts !== undefined) header.ts = extras.trace.ts
    }
    if (this.unreportedEvictions > 0) {
      header.evicted = this.unreportedEvictions
      this.unreportedEvictions = 0
    }
    peer.send(header, payload)
    if (seq > stream.delivered) stream.delivered = seq
  }

  /** One line from the server's stdout. */
  handleServerLine(line: string): void {
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      this.logger.warn(
        { line: line.slice(0, 200) },
        'skipped a server output line that is not JSON'
      )
      return
    }
    const classified = classifyMessage(value)
    if (!classified) {
      this.logger.warn(
        { line: line.slice(0, 200) },
        'skipped a server output line that is not JSON-RPC'
      )
      return
    }
    if (classified.kind === 'response') {
      const id = classified.message.id
      const stream = id === null ? undefined : this.pending.get(requestStreamKey(id))
      if (!stream) {
        this.logger.warn({ id }, 'dropped a server response to no pending request')
        return
      }
      this.emit(stream, line, true, { errorType: responseErrorType(classified.message) })
      this.endRequestSpan(stream.key, classified.message)
      return
    }
    const message = classified.message
    const stream = this.routeOf(message)
    if (classified.kind === 'request') this.serverRequests.set(idKey(classified.message.id), stream)
    if (!this.tracer) return this.emit(stream, line, false)
    // The server's own context if it gave one, else the request this message belongs to.
    const span = this.tracer.serverMessage(
      message,
      traceContextOf(message) ?? this.requestSpans.get(stream.key)?.context
    )
    if (classified.kind === 'request')
      this.serverRequestSpans.set(idKey(classified.message.id), span)
    else span.end()
    this.emit(stream, line, false, { trace: span.context })
  }

  private routeOf(message: JSONRPCRequest | JSONRPCNotification): Stream {
    if (message.method === 'notifications/progress') {
      const token = message.params?.progressToken
      const stream =
        typeof token === 'string' || typeof token === 'number'
          ? this.progress.get(idKey(token))
          : undefined
      if (stream && !stream.complete) return stream
    } else if (message.method === 'notifications/cancelled') {
      const id = message.params?.requestId
      if (typeof id === 'string' || typeof id === 'number') {
        const stream = this.serverRequests.get(idKey(id)) ?? this.pending.get(requestStreamKey(id))
        if (stream && !stream.complete) return stream
      }
    }
    if (this.pending.size === 1) return this.pending.values().next().value!
    return this.standalone
  }

  /**
   * Sends a server message to its stream's listener, then logs it: the frame goes out first, so
   * the bridge is already answering while the log is kept. The event's sequence number is the
   * stream's next one, which the append that follows assigns to it; the log makes room for it
   * first, so the frame reports the evictions it causes, as when it was appended first.
   */
  private emit(stream: Stream, payload: string, fin: boolean, extras?: EventExtras): void {
    const listener = stream.listener
    if (listener) {
      this.log.makeRoom(payload.length)
      this.sendEvent(listener.peer, listener.ch, stream, stream.nextSeq, payload, fin, extras)
    }
    this.log.append(stream, payload, fin)
    if (fin) {
      this.complete(stream)
      stream.listener = undefined
    }
  }

  private complete(stream: Stream): void {
    stream.complete = true
    this.pending.delete(stream.key)
    // Idle time counts from the end of the last request, not from its start.
    this.lastActivity = this.now()
    for (const [token, target] of this.progress) if (target === stream) this.progress.delete(token)
    for (const [id, target] of this.serverRequests) {
      if (target !== stream) continue
      this.serverRequests.delete(id)
      this.endServerRequestSpan(id, 'cancelled')
    }
  }

  private requestEnd(end: SessionEnd): void {
    if (this.ended) return
    this.ended = end
    this.onend?.(end)
  }

  /** The idle timer fired. */
  endIfIdle(): boolean {
    if (!this.isIdle()) return false
    this.requestEnd({ reason: 'idle' })
    return true
  }

  /**
   * The server is gone (exited, or stopped for `end.reason`): every pending request
   * gets an error response on its stream, then every bridge is told the session is over.
   */
  close(end: SessionEnd, detail: string): void {
    this.ended ??= end
    for (const stream of [...this.pending.values()]) {
      const response = errorResponse(requestIdOfStream(stream.key)!, ErrorCode.ServerError, detail)
      this.endRequestSpan(stream.key, response)
      const errorType = responseErrorType(response)
      this.emit(stream, JSON.stringify(response), true, { errorType })
    }
    for (const id of [...this.serverRequestSpans.keys()]) {
      this.endServerRequestSpan(id, 'session_ended')
    }
    const { reason, code, signal } = this.ended
    // Every bridge learns the session is over; one of them (any) counts it.
    let report: Pick<ExitFrame, 'ageMs' | 'evicted'> | undefined = {
      ageMs: Math.max(0, this.now() - this.startedAt),
      ...(this.unreportedEvictions > 0 ? { evicted: this.unreportedEvictions } : {}),
    }
    for (const peer of this.peers) {
      peer.send({ t: 'exit', reason, code, signal, ...report })
      report = undefined
    }
    if (this.peers.size > 0) this.unreportedEvictions = 0
  }
}
