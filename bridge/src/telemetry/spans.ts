/**
 * @module
 * The bridge's spans: a SERVER span per client message, named and attributed per the
 * OpenTelemetry MCP conventions, and the session-start span. Attributes never hold tokens,
 * sealed session ids, query strings or message contents: `mcp.session.id` is the session name.
 */
import {
  type Span,
  type Tracer,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api'
import {
  type JSONRPCNotification,
  type JSONRPCRequest,
  type TraceFields,
  ATTR_ERROR_TYPE,
  ATTR_MCP_PROTOCOL_VERSION,
  ATTR_MCP_SESSION_ID,
  ATTR_NETWORK_PROTOCOL_NAME,
  ATTR_NETWORK_TRANSPORT,
  ATTR_RPC_RESPONSE_STATUS_CODE,
  mcpMessageAttributes,
  mcpSpanName,
  traceContextOf,
} from '@ferry/shared'
import { messageParent } from './http-context.ts'

export const ATTR_FERRY_SERVER = 'ferry.server'
export const ATTR_FERRY_RUNTIME = 'ferry.runtime'
export const SESSION_START_SPAN = 'ferry.session.start'

/** A SERVER span for a client message, continuing its `_meta` context or the HTTP one. */
export const startMessageSpan = (
  tracer: Tracer,
  message: JSONRPCRequest | JSONRPCNotification,
  http: TraceFields | undefined
): Span => {
  const { context, links } = messageParent(traceContextOf(message), http)
  return tracer.startSpan(
    mcpSpanName(message),
    {
      kind: SpanKind.SERVER,
      attributes: {
        ...mcpMessageAttributes(message),
        [ATTR_NETWORK_PROTOCOL_NAME]: 'http',
        [ATTR_NETWORK_TRANSPORT]: 'tcp',
      },
      ...(links ? { links } : {}),
    },
    context
  )
}

/** Records the session a span belongs to: its name (never its id) and negotiated version. */
export const setSessionAttributes = (
  span: Span,
  sessionName: string,
  protocolVersion?: string
): void => {
  span.setAttribute(ATTR_MCP_SESSION_ID, sessionName)
  if (protocolVersion) span.setAttribute(ATTR_MCP_PROTOCOL_VERSION, protocolVersion)
}

/**
 * Marks a span failed: `error.type`, `rpc.response.status_code` when the type is a JSON-RPC code,
 * status ERROR with `description`.
 */
export const setSpanError = (span: Span, errorType: string, description?: string): void => {
  span.setAttribute(ATTR_ERROR_TYPE, errorType)
  if (/^-?\d+$/.test(errorType)) span.setAttribute(ATTR_RPC_RESPONSE_STATUS_CODE, errorType)
  span.setStatus({ code: SpanStatusCode.ERROR, message: description ?? errorType })
}

/**
 * The session-start span: an INTERNAL child of the `initialize` span, from the runtime start to
 * the `initialize` answer, with an event per phase.
 */
export const startSessionStartSpan = (
  tracer: Tracer,
  parent: Span,
  serverName: string,
  runtime: string
): Span =>
  tracer.startSpan(
    SESSION_START_SPAN,
    {
      kind: SpanKind.INTERNAL,
      attributes: { [ATTR_FERRY_SERVER]: serverName, [ATTR_FERRY_RUNTIME]: runtime },
    },
    trace.setSpan(ROOT_CONTEXT, parent)
  )
