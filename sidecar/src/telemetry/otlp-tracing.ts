/**
 * @module
 * The sidecar's OpenTelemetry SDK: a `TracerProvider` exporting over OTLP/HTTP, configured by the
 * standard `OTEL_*` variables (endpoint, headers, timeout and protocol through the exporter,
 * `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`).
 * Not NodeSDK:
 * it imports every exporter it could be configured with (gRPC, Zipkin, Prometheus, logs), which
 * would quadruple the single-file bundle. Loaded only through `loadSessionTracer`.
 */
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources'
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPTraceExporter as ProtobufTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { otlpProtocol } from '@ferry/shared'
import { OtelSessionTracer } from './otel-session-tracer.ts'
import { samplerFromEnv } from './sampler.ts'
import type { SessionTracer, TracerSettings } from './session-tracer.ts'

export const SERVICE_NAME = 'ferry-sidecar'

/** The batch processor's settings from `OTEL_BSP_*`; the SDK's defaults for what is unset. */
const batchSettings = (env: Record<string, string | undefined>) => {
  const settings: Record<string, number> = {}
  for (const [name, key] of [
    ['OTEL_BSP_SCHEDULE_DELAY', 'scheduledDelayMillis'],
    ['OTEL_BSP_EXPORT_TIMEOUT', 'exportTimeoutMillis'],
    ['OTEL_BSP_MAX_QUEUE_SIZE', 'maxQueueSize'],
    ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'maxExportBatchSize'],
  ] as const) {
    const value = Number(env[name])
    if (env[name] !== undefined && Number.isInteger(value) && value > 0) settings[key] = value
  }
  return settings
}

/** Starts exporting; undefined (tracing stays off) for a protocol the sidecar does not speak. */
export const startOtlpTracing = (
  env: Record<string, string | undefined>,
  settings: TracerSettings
): SessionTracer | undefined => {
  const protocol = otlpProtocol(env, 'traces')
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    settings.logger.warn(
      { protocol },
      'tracing is off: the sidecar exports OTLP over http/protobuf or http/json only'
    )
    return undefined
  }
  const exporter = protocol === 'http/json' ? new JsonTraceExporter() : new ProtobufTraceExporter()
  const provider = new TracerProvider({
    resource: defaultResource()
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: SERVICE_NAME }))
      .merge(detectResources({ detectors: [envDetector] })),
    sampler: samplerFromEnv(env),
    spanProcessors: [new BatchSpanProcessor({ exporter, ...batchSettings(env) })],
  })
  return new OtelSessionTracer(provider.getTracer(SERVICE_NAME), settings.sessionName, () =>
    provider.shutdown()
  )
}
