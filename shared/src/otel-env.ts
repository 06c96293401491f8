/**
 * @module
 * Whether OpenTelemetry export is configured, read from the standard `OTEL_*` variables. The SDK
 * is started only when this says so: a NodeSDK started without an endpoint still sends to
 * `localhost:4318`, and an unconfigured Ferry must send nothing and load nothing.
 */

/** A signal exported over OTLP. */
export type OtlpSignal = 'traces' | 'metrics'

/**
 * True when `signal` has an OTLP endpoint (`OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`, else
 * `OTEL_EXPORTER_OTLP_ENDPOINT`), the SDK is not disabled (`OTEL_SDK_DISABLED=true`) and the
 * signal's exporter is not `none` (`OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`).
 */
export const otlpExportConfigured = (
  env: Record<string, string | undefined>,
  signal: OtlpSignal
): boolean => {
  const upper = signal.toUpperCase()
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false
  if (env[`OTEL_${upper}_EXPORTER`]?.trim().toLowerCase() === 'none') return false
  return Boolean(env[`OTEL_EXPORTER_OTLP_${upper}_ENDPOINT`] || env.OTEL_EXPORTER_OTLP_ENDPOINT)
}

/** The OTLP protocol for `signal`: `http/protobuf` (the default), `http/json` or `grpc`. */
export const otlpProtocol = (env: Record<string, string | undefined>, signal: OtlpSignal): string =>
  (
    env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_PROTOCOL`] ??
    env.OTEL_EXPORTER_OTLP_PROTOCOL ??
    'http/protobuf'
  ).trim()
