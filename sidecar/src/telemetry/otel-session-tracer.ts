/**
 * @module
 * The session's spans, per the OpenTelemetry MCP conventions: `{mcp.method.name} {target}`, a
 * SERVER span for each client request or notification written to the server, a CLIENT span for
 * each request or notification the server sends toward the client. Parents come from the frame
 * (the bridge's span) or the message's own `_meta` (SEP-414); the session name, never its
 * sealed id, is `mcp.session.id`.
 */
import {
  type Attributes,
  type Span,
  type Tracer,
  SpanKind,
  SpanStatusCode,
} from '@opentelemetry/api'
import {
  type JSONRPCNotification,
  type JSONRPCRequest,
  type JSONRPCResponse,
  type TraceFields,
  ATTR_ERROR_TYPE,
  ATTR_MCP_PROTOCOL_VERSION,
  ATTR_MCP_SESSION_ID,
  ATTR_NETWORK_PROTOCOL_NAME,
  ATTR_NETWORK_TRANSPORT,
  ATTR_RPC_RESPONSE_STATUS_CODE,
  mcpMessageAttributes,
  mcpSpanName,
  responseErrorType,
} from '@ferry/shared'
import { remoteParent, spanTraceFields } from '@ferry/shared/otel'
import type { MessageSpan, SessionTracer } from './session-tracer.ts'

class TracedMessage implements MessageSpan {
  readonly context: TraceFields & { tp: string }
  private readonly span: Span
  private readonly onresult: ((result: Record<string, unknown>) => void) | undefined
  private ended = false

  constructor(span: Span, onresult?: (result: Record<string, unknown>) => void) {
    this.span = span
    this.context = spanTraceFields(span)
    this.onresult = onresult
  }

  end(outcome?: JSONRPCResponse | string): void {
    if (this.ended) return
    this.ended = true
    const errorType = typeof outcome === 'object' ? responseErrorType(outcome) : outcome
    if (errorType !== undefined) {
      this.span.setAttribute(ATTR_ERROR_TYPE, errorType)
      const error = typeof outcome === 'object' && 'error' in outcome ? outcome.error : undefined
      if (error) this.span.setAttribute(ATTR_RPC_RESPONSE_STATUS_CODE, errorType)
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error?.message ?? errorType })
    } else if (typeof outcome === 'object' && 'result' in outcome) {
      this.onresult?.(outcome.result)
    }
    this.span.end()
  }
}

export class OtelSessionTracer implements SessionTracer {
  private readonly tracer: Tracer
  private readonly sessionName: string
  private readonly stop: () => Promise<void>
  /** Negotiated once `initialize` is answered; on every span after that. */
  private protocolVersion: string | undefined

  constructor(tracer: Tracer, sessionName: string, stop: () => Promise<void> = async () => {}) {
    this.tracer = tracer
    this.sessionName = sessionName
    this.stop = stop
  }

  clientMessage(
    message: JSONRPCRequest | JSONRPCNotification,
    parent: TraceFields | undefined
  ): MessageSpan {
    const span = this.start(message, SpanKind.SERVER, parent, {
      [ATTR_NETWORK_PROTOCOL_NAME]: 'websocket',
    })
    if (message.method !== 'initialize') return new TracedMessage(span)
    return new TracedMessage(span, (result) => {
      if (typeof result.protocolVersion === 'string') this.protocolVersion = result.protocolVersion
    })
  }

  serverMessage(
    message: JSONRPCRequest | JSONRPCNotification,
    parent: TraceFields | undefined
  ): MessageSpan {
    return new TracedMessage(
      this.start(message, SpanKind.CLIENT, parent, { [ATTR_NETWORK_TRANSPORT]: 'pipe' })
    )
  }

  async shutdown(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))
    await Promise.race([this.stop().catch(() => undefined), bound])
    clearTimeout(timer)
  }

  private start(
    message: JSONRPCRequest | JSONRPCNotification,
    kind: SpanKind,
    parent: TraceFields | undefined,
    network: Attributes
  ): Span {
    const attributes: Attributes = {
      ...mcpMessageAttributes(message),
      [ATTR_MCP_SESSION_ID]: this.sessionName,
      ...network,
    }
    if (this.protocolVersion) attributes[ATTR_MCP_PROTOCOL_VERSION] = this.protocolVersion
    return this.tracer.startSpan(mcpSpanName(message), { kind, attributes }, remoteParent(parent))
  }
}
