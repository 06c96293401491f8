/**
 * @module
 * What the session needs from tracing, and the loader that turns it on. The OpenTelemetry SDK is
 * imported only here, dynamically, and only when an OTLP endpoint is configured: an unconfigured
 * sidecar never evaluates the SDK (esbuild bundles it as a lazily initialised module), and its
 * session does no per-message tracing work at all.
 */
import {
  type JSONRPCNotification,
  type JSONRPCRequest,
  type JSONRPCResponse,
  type Logger,
  type TraceFields,
  otlpExportConfigured,
} from '@ferry/shared'

/** The span of one relayed message. */
export interface MessageSpan {
  /** The span's own context: written into `_meta` toward the server, or into an `ev` frame. */
  readonly context: TraceFields & { tp: string }
  /**
   * Ends the span, once: with the response that answered the request, or with an `error.type`
   * when it ended without one (`cancelled`, `session_ended`); no argument for a notification.
   */
  end(outcome?: JSONRPCResponse | string): void
}

export interface SessionTracer {
  /**
   * A client request or notification the sidecar is about to write to the server: a SERVER span
   * (the sidecar serves what came over the WebSocket hop), child of `parent`.
   */
  clientMessage(
    message: JSONRPCRequest | JSONRPCNotification,
    parent: TraceFields | undefined
  ): MessageSpan
  /**
   * A request or notification the server sent toward the client: a CLIENT span (the sidecar
   * calls the client on the server's behalf), child of `parent`.
   */
  serverMessage(
    message: JSONRPCRequest | JSONRPCNotification,
    parent: TraceFields | undefined
  ): MessageSpan
  /** Exports what is buffered and stops; resolves within `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>
}

export interface TracerSettings {
  sessionName: string
  logger: Logger
}

/**
 * The session's tracer when OTLP trace export is configured in `env`; undefined otherwise, and
 * when the configuration is unusable (said in the log: a session is not refused for its tracing).
 */
export const loadSessionTracer = async (
  env: Record<string, string | undefined>,
  settings: TracerSettings
): Promise<SessionTracer | undefined> => {
  if (!otlpExportConfigured(env, 'traces')) return undefined
  try {
    const { startOtlpTracing } = await import('./otlp-tracing.ts')
    return startOtlpTracing(env, settings)
  } catch (error) {
    settings.logger.warn({ error: (error as Error).message }, 'tracing is off: cannot start it')
    return undefined
  }
}
