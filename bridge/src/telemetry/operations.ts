/**
 * @module
 * One place for what the MCP endpoint records per client message: the operation's duration by
 * method and outcome (always), and its SERVER span (only when tracing is on). With tracing off an
 * operation is a start time and a method name: no span objects, no context parsing.
 */
import { type Span, type Tracer, trace } from '@opentelemetry/api'
import type { JSONRPCNotification, JSONRPCRequest, TraceFields } from '@ferry/shared'
import { remoteParent, spanTraceFields } from '@ferry/shared/otel'
import { httpTraceFields } from './http-context.ts'
import type { BridgeMetrics } from './metrics.ts'
import {
  setSessionAttributes,
  setSpanError,
  startMessageSpan,
  startSessionStartSpan,
} from './spans.ts'

/** One client message, from its arrival to its answer (the end of its SSE stream, if streamed). */
export class Operation {
  /** The span's context for the frames that carry the message; undefined when not tracing. */
  readonly trace: (TraceFields & { tp: string }) | undefined
  readonly span: Span | undefined
  private readonly metrics: BridgeMetrics
  private readonly method: string
  private readonly started = performance.now()
  private ended = false

  constructor(metrics: BridgeMetrics, method: string, span?: Span) {
    this.metrics = metrics
    this.method = method
    this.span = span
    this.trace = span && spanTraceFields(span)
  }

  /** The session the message belongs to. */
  session(sessionName: string, protocolVersion?: string): void {
    if (this.span) setSessionAttributes(this.span, sessionName, protocolVersion)
  }

  /** Links the span of a server message the sidecar sent on this exchange (`tp`/`ts` of its `ev`). */
  link(frame: TraceFields): void {
    if (!this.span || frame.tp === undefined) return
    const context = trace.getSpanContext(remoteParent(frame))
    if (context) this.span.addLink({ context })
  }

  /** Ends the operation, once: with its `error.type` (and message) unless it succeeded. */
  end(errorType?: string, description?: string): void {
    if (this.ended) return
    this.ended = true
    this.metrics.operation(this.method, errorType, (performance.now() - this.started) / 1000)
    if (!this.span) return
    if (errorType !== undefined) setSpanError(this.span, errorType, description)
    this.span.end()
  }
}

/** The phases of a session start, each an event on the session-start span. */
export type StartPhase =
  'start.admitted' | 'workload.ready' | 'sidecar.connected' | 'initialize.answered'

/** A session start: its latency by runtime and outcome, and its span when tracing. */
export class SessionStart {
  private readonly span: Span | undefined
  /** The span's context for the forwarded `initialize`. */
  readonly trace: (TraceFields & { tp: string }) | undefined
  private readonly metrics: BridgeMetrics
  private readonly runtime: string
  private readonly started = performance.now()

  constructor(metrics: BridgeMetrics, runtime: string, span?: Span) {
    this.metrics = metrics
    this.runtime = runtime
    this.span = span
    this.trace = span && spanTraceFields(span)
  }

  phase(name: StartPhase): void {
    this.span?.addEvent(name)
  }

  /** The new session's name (not its id), once allocated. */
  session(sessionName: string): void {
    if (this.span) setSessionAttributes(this.span, sessionName)
  }

  succeed(): void {
    this.metrics.sessionStart(this.runtime, 'ok', this.elapsed())
    this.span?.end()
  }

  /** The start failed: `failure` is a short kind (`timeout`, `spawn`, …), `reason` the text. */
  fail(failure: string, reason: string): void {
    this.metrics.sessionStart(this.runtime, failure, this.elapsed())
    if (!this.span) return
    this.span.addEvent('session.start.failed', { 'ferry.failure': failure })
    setSpanError(this.span, failure, reason)
    this.span.end()
  }

  private elapsed(): number {
    return (performance.now() - this.started) / 1000
  }
}

/** Makes operations and session starts; traces only when given a tracer. */
export class Instrumentation {
  readonly metrics: BridgeMetrics
  private readonly tracer: Tracer | undefined

  constructor(metrics: BridgeMetrics, tracer?: Tracer) {
    this.metrics = metrics
    this.tracer = tracer
  }

  /** A client request or notification arrived in an HTTP request with these headers. */
  begin(message: JSONRPCRequest | JSONRPCNotification, headers: Headers): Operation {
    const span = this.tracer && startMessageSpan(this.tracer, message, httpTraceFields(headers))
    return new Operation(this.metrics, message.method, span)
  }

  /** A session start inside the `initialize` operation `operation`. */
  sessionStart(operation: Operation, serverName: string, runtime: string): SessionStart {
    const span =
      this.tracer &&
      operation.span &&
      startSessionStartSpan(this.tracer, operation.span, serverName, runtime)
    return new SessionStart(this.metrics, runtime, span)
  }
}
