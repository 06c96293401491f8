/**
 * @module
 * Trace context between W3C strings and OpenTelemetry contexts, for the bridge and the sidecar's
 * tracing code. A subpath of its own (`@ferry/shared/otel`), never imported by the package's
 * main entry: importing it loads `@opentelemetry/api`, which an untraced sidecar must not.
 */
import { type Context, type Span, ROOT_CONTEXT, createTraceState, trace } from '@opentelemetry/api'
import { type TraceFields, formatTraceparent, parseTraceparent } from './trace-context.ts'

/**
 * A remote parent context from W3C strings, on top of `base`; `base` itself when the
 * `traceparent` is missing or invalid.
 */
export const remoteParent = (fields: TraceFields | undefined, base = ROOT_CONTEXT): Context => {
  const parsed = fields?.tp === undefined ? undefined : parseTraceparent(fields.tp)
  if (!parsed) return base
  return trace.setSpanContext(base, {
    ...parsed,
    isRemote: true,
    ...(fields!.ts ? { traceState: createTraceState(fields!.ts) } : {}),
  })
}

/** The W3C strings of a span's own context, for a frame or a message's `_meta`. */
export const spanTraceFields = (span: Span): TraceFields & { tp: string } => {
  const { traceId, spanId, traceFlags, traceState } = span.spanContext()
  const tp = formatTraceparent(traceId, spanId, traceFlags)
  const ts = traceState?.serialize()
  return ts ? { tp, ts } : { tp }
}
