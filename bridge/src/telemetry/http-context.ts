/**
 * @module
 * The parent of a client message's span. The MCP conventions: continue the context the message
 * carries in `params._meta` (SEP-414) and link the ambient HTTP context when there is one; with
 * no `_meta` context, continue the HTTP `traceparent` header. MCP and HTTP contexts are
 * independent (one HTTP request, retried or batched, can carry several MCP messages). Only
 * `traceparent` and `tracestate` are read: never other headers, the URL or its query string.
 */
import { type Context, type Link, ROOT_CONTEXT, trace } from '@opentelemetry/api'
import type { TraceFields } from '@ferry/shared'
import { remoteParent } from '@ferry/shared/otel'

export interface MessageParent {
  context: Context
  /** The HTTP context, when the message's own context took precedence over it. */
  links?: Link[]
}

/** The HTTP request's W3C trace context headers, if it has a `traceparent`. */
export const httpTraceFields = (headers: Headers): TraceFields | undefined => {
  const tp = headers.get('traceparent')
  if (tp === null) return undefined
  const ts = headers.get('tracestate')
  return ts === null ? { tp } : { tp, ts }
}

/** `_meta` context first, else HTTP context; the HTTP one linked when both exist. */
export const messageParent = (
  meta: TraceFields | undefined,
  http: TraceFields | undefined
): MessageParent => {
  const httpContext = remoteParent(http)
  const metaContext = remoteParent(meta)
  if (metaContext === ROOT_CONTEXT) return { context: httpContext }
  const linked = trace.getSpanContext(httpContext)
  return linked && linked.spanId !== trace.getSpanContext(metaContext)!.spanId
    ? { context: metaContext, links: [{ context: linked }] }
    : { context: metaContext }
}
