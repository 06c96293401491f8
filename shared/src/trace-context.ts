/**
 * @module
 * W3C trace context as raw strings, with no OpenTelemetry dependency, so the sidecar bundle can
 * use it without loading the SDK. MCP carries trace context in a message's `params._meta`
 * (SEP-414 reserves `traceparent`, `tracestate` and `baggage`, un-prefixed); the bridge ↔
 * sidecar frames carry it in their `tp` / `ts` header fields.
 */
import type { JSONRPCNotification, JSONRPCRequest } from './jsonrpc.ts'
import { metaOf } from './jsonrpc.ts'

/** A W3C `traceparent` and optional `tracestate`, as the frames' `tp` / `ts` fields carry them. */
export interface TraceFields {
  tp?: string
  ts?: string
}

/** The parts of a valid `traceparent`. */
export interface Traceparent {
  traceId: string
  spanId: string
  /** The trace flags byte (bit 0: sampled). */
  traceFlags: number
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

/**
 * Parses a `traceparent` per W3C Trace Context level 1: version `00` exactly, later versions
 * with possible extra fields; all-zero ids and version `ff` are invalid.
 */
export const parseTraceparent = (value: string): Traceparent | undefined => {
  const match = TRACEPARENT.exec(value)
  if (!match) return undefined
  const [, version, traceId, spanId, flags, rest] = match
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined
  return { traceId: traceId!, spanId: spanId!, traceFlags: parseInt(flags!, 16) }
}

/** Formats a version-00 `traceparent`. */
export const formatTraceparent = (traceId: string, spanId: string, traceFlags: number): string =>
  `00-${traceId}-${spanId}-${traceFlags & 0xff ? '01' : '00'}`

/**
 * The trace context a request or notification carries in `params._meta` (SEP-414), as frame
 * fields; undefined when it has no string `traceparent`.
 */
export const traceContextOf = (
  message: JSONRPCRequest | JSONRPCNotification
): TraceFields | undefined => {
  const meta = metaOf(message)
  const tp = meta?.traceparent
  if (typeof tp !== 'string') return undefined
  const ts = meta!.tracestate
  return typeof ts === 'string' ? { tp, ts } : { tp }
}

/**
 * A copy of `message` whose `params._meta.traceparent` / `tracestate` are the given context; every
 * other `_meta` key (`baggage`, `progressToken`, …) is kept. A `tracestate` the new context does
 * not have is removed: it belonged to the replaced parent.
 */
export const withTraceContext = <M extends JSONRPCRequest | JSONRPCNotification>(
  message: M,
  context: TraceFields & { tp: string }
): M => {
  const meta: Record<string, unknown> = { ...metaOf(message), traceparent: context.tp }
  if (context.ts === undefined) delete meta.tracestate
  else meta.tracestate = context.ts
  return { ...message, params: { ...message.params, _meta: meta } }
}

/** `trace_id` and `span_id` for a log line about the span with this context; none without one. */
export const traceLogFields = (fields: TraceFields | undefined): Record<string, string> => {
  const parsed = fields?.tp === undefined ? undefined : parseTraceparent(fields.tp)
  return parsed ? { trace_id: parsed.traceId, span_id: parsed.spanId } : {}
}
