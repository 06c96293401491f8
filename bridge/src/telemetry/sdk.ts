/**
 * @module
 * Starts the bridge's OpenTelemetry export from the standard `OTEL_*` variables, and only when an
 * OTLP endpoint is configured for the signal (see `otlpExportConfigured`): unconfigured, nothing
 * is loaded and nothing is sent. Traces go through NodeSDK (exporter, protocol, sampler, batch
 * settings and resource from the environment); metrics through a periodic OTLP reader added to
 * the bridge's own meter provider, which also serves `/metrics`.
 */
import { createRequire } from 'node:module'
import { type Tracer, trace } from '@opentelemetry/api'
import type { MetricReader, PushMetricExporter } from '@opentelemetry/sdk-metrics'
import { otlpExportConfigured, otlpProtocol } from '@ferry/shared'

export const SERVICE_NAME = 'ferry-bridge'
export const SERVICE_VERSION = (
  createRequire(import.meta.url)('../../package.json') as { version: string }
).version

export interface Telemetry {
  /** The tracer for the bridge's spans; undefined when tracing is off. */
  tracer: Tracer | undefined
  /** OTLP metric readers for the bridge's meter provider (none unless configured). */
  metricReaders: MetricReader[]
  /** Exports buffered spans and stops tracing (metric readers stop with their provider). */
  shutdown(): Promise<void>
}

const otlpMetricExporter = async (
  env: Record<string, string | undefined>
): Promise<PushMetricExporter> => {
  switch (otlpProtocol(env, 'metrics')) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-metrics-otlp-grpc')).OTLPMetricExporter()
    case 'http/json':
      return new (await import('@opentelemetry/exporter-metrics-otlp-http')).OTLPMetricExporter()
    default:
      return new (await import('@opentelemetry/exporter-metrics-otlp-proto')).OTLPMetricExporter()
  }
}

const positive = (text: string | undefined, fallback: number) => {
  const value = Number(text)
  return Number.isFinite(value) && value > 0 ? value : fallback
}

/** Starts what `env` configures. */
export const startTelemetry = async (
  env: Record<string, string | undefined>
): Promise<Telemetry> => {
  const metricReaders: MetricReader[] = []
  if (otlpExportConfigured(env, 'metrics')) {
    const { PeriodicExportingMetricReader } = await import('@opentelemetry/sdk-metrics')
    const interval = positive(env.OTEL_METRIC_EXPORT_INTERVAL, 60_000)
    metricReaders.push(
      new PeriodicExportingMetricReader({
        exporter: await otlpMetricExporter(env),
        exportIntervalMillis: interval,
        exportTimeoutMillis: Math.min(interval, positive(env.OTEL_METRIC_EXPORT_TIMEOUT, 30_000)),
      })
    )
  }
  if (!otlpExportConfigured(env, 'traces')) {
    return { tracer: undefined, metricReaders, shutdown: async () => {} }
  }
  const { NodeSDK } = await import('@opentelemetry/sdk-node')
  const { defaultResource, resourceFromAttributes } = await import('@opentelemetry/resources')
  const sdk = new NodeSDK({
    resource: defaultResource().merge(
      resourceFromAttributes({ 'service.version': SERVICE_VERSION })
    ),
    // OTEL_SERVICE_NAME, when set, names the service instead.
    ...(env.OTEL_SERVICE_NAME ? {} : { serviceName: SERVICE_NAME }),
    instrumentations: [],
    // Metrics are the bridge's own meter provider's; Ferry writes no OpenTelemetry logs.
    metricReaders: [],
    logRecordProcessors: [],
  })
  sdk.start()
  return {
    tracer: trace.getTracer(SERVICE_NAME, SERVICE_VERSION),
    metricReaders,
    shutdown: () => sdk.shutdown(),
  }
}
