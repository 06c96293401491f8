/**
 * @module
 * The bridge's metrics, on the OpenTelemetry metrics SDK: served as Prometheus text at
 * `GET /metrics` (the Prometheus exporter as a pull reader, no server of its own) and pushed over
 * OTLP when that is configured (extra readers). Every label has a bounded set of values: method
 * names outside MCP's and error types outside JSON-RPC's range become `_OTHER`; no session ids.
 */
import type { Attributes, Counter, Histogram, Meter } from '@opentelemetry/api'
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { type MetricReader, MeterProvider } from '@opentelemetry/sdk-metrics'
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import {
  type ExitReason,
  ATTR_ERROR_TYPE,
  ATTR_MCP_METHOD_NAME,
  ERROR_TYPE_TOOL_ERROR,
  ERROR_TYPE_VALUE_OTHER,
} from '@ferry/shared'
import { ATTR_FERRY_RUNTIME } from './spans.ts'

export const ATTR_FERRY_OUTCOME = 'ferry.outcome'
export const ATTR_FERRY_END_REASON = 'ferry.session.end_reason'
export const ATTR_FERRY_RELAY_ERROR = 'ferry.relay.error'

/** Methods a client may send; anything else is counted as `_OTHER`. */
const CLIENT_METHODS = new Set([
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
  'tasks/get',
  'tasks/list',
  'tasks/result',
  'tasks/cancel',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/roots/list_changed',
  'notifications/tasks/status',
])

/** Error types of Ferry's own making, besides JSON-RPC codes. */
const FERRY_ERROR_TYPES = new Set([ERROR_TYPE_TOOL_ERROR, 'cancelled'])

/** A method name as a label value. */
export const methodLabel = (method: string): string =>
  CLIENT_METHODS.has(method) ? method : ERROR_TYPE_VALUE_OTHER

/** An `error.type` as a label value: JSON-RPC codes (-32768…-32000), `tool_error`, `cancelled`. */
export const errorTypeLabel = (errorType: string): string => {
  if (FERRY_ERROR_TYPES.has(errorType)) return errorType
  const code = /^-\d{5}$/.test(errorType) ? Number(errorType) : NaN
  return code >= -32768 && code <= -32000 ? errorType : ERROR_TYPE_VALUE_OTHER
}

/** Buckets for operation and start latencies, in seconds (the MCP conventions' advice). */
const LATENCY_BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]
/** Buckets for session lifetimes, in seconds (1 s to a day). */
const SESSION_BUCKETS = [1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400]

export interface BridgeMetricsOptions {
  serviceName: string
  serviceVersion?: string
  /** More readers, e.g. a periodic OTLP exporter. */
  readers?: MetricReader[]
}

/** Where the gauges read their values at collection time. */
export interface GaugeSources {
  /** Running sessions this replica started, by runtime kind. */
  activeSessions(): Iterable<[runtime: string, count: number]>
  /** Open WebSocket connections to sidecars. */
  connections(): number
  /** Session starts waiting for their turn to boot, by runtime kind. */
  waitingStarts(): Iterable<[runtime: string, count: number]>
}

export class BridgeMetrics {
  private readonly provider: MeterProvider
  private readonly prometheus: PrometheusExporter
  private readonly meter: Meter
  private readonly serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
  private readonly operationDuration: Histogram
  private readonly sessionDuration: Histogram
  private readonly startDuration: Histogram
  private readonly sessionsStarted: Counter
  private readonly sessionsEnded: Counter
  private readonly relayErrors: Counter
  private readonly evictions: Counter

  constructor(options: BridgeMetricsOptions) {
    this.prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
    this.provider = new MeterProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: options.serviceName,
        ...(options.serviceVersion ? { 'service.version': options.serviceVersion } : {}),
      }),
      readers: [this.prometheus, ...(options.readers ?? [])],
    })
    const meter = (this.meter = this.provider.getMeter(options.serviceName, options.serviceVersion))
    const seconds = (name: string, description: string, buckets: number[]) =>
      meter.createHistogram(name, {
        description,
        unit: 's',
        advice: { explicitBucketBoundaries: buckets },
      })
    this.operationDuration = seconds(
      'mcp.server.operation.duration',
      'Time from a client message reaching the bridge to its answer (the end of its SSE stream for streamed answers)',
      LATENCY_BUCKETS
    )
    this.sessionDuration = seconds(
      'mcp.server.session.duration',
      'How long sessions ran, counted when their sidecar reports the end',
      SESSION_BUCKETS
    )
    this.startDuration = seconds(
      'ferry.session.start.duration',
      'Session start latency: runtime start, sidecar connection and initialize',
      LATENCY_BUCKETS
    )
    this.sessionsStarted = meter.createCounter('ferry.sessions.started', {
      description: 'Sessions started by this replica',
    })
    this.sessionsEnded = meter.createCounter('ferry.sessions.ended', {
      description: 'Sessions ended, by reason (deleted, idle, server_exit, shutdown)',
    })
    this.relayErrors = meter.createCounter('ferry.relay.errors', {
      description:
        'Bridge-sidecar relay failures: dial, lost, bad_message, duplicate_id, unknown_stream, not_running',
    })
    this.evictions = meter.createCounter('ferry.event_log.evictions', {
      description: "Events evicted from sessions' event logs before a client resumed them",
    })
  }

  /** Starts reading the gauges from `sources`. */
  observe(sources: GaugeSources): void {
    const byRuntime = (
      name: string,
      description: string,
      counts: () => Iterable<[runtime: string, count: number]>
    ) =>
      this.meter.createObservableGauge(name, { description }).addCallback((result) => {
        for (const [runtime, count] of counts()) {
          result.observe(count, { [ATTR_FERRY_RUNTIME]: runtime })
        }
      })
    byRuntime('ferry.sessions.active', 'Running sessions this replica started', () =>
      sources.activeSessions()
    )
    byRuntime(
      'ferry.session.starts.waiting',
      'Session starts waiting for their turn to boot (bridge.local.maxConcurrentStarts)',
      () => sources.waitingStarts()
    )
    this.meter
      .createObservableGauge('ferry.sidecar.connections', {
        description: 'Open WebSocket connections from this replica to sidecars',
      })
      .addCallback((result) => result.observe(sources.connections()))
  }

  /** A client message was answered after `seconds`; `errorType` unless it succeeded. */
  operation(method: string, errorType: string | undefined, seconds: number): void {
    const attributes: Attributes = { [ATTR_MCP_METHOD_NAME]: methodLabel(method) }
    if (errorType !== undefined) attributes[ATTR_ERROR_TYPE] = errorTypeLabel(errorType)
    this.operationDuration.record(seconds, attributes)
  }

  /** A session start finished: `outcome` is `ok` or the failure kind. */
  sessionStart(runtime: string, outcome: string, seconds: number): void {
    this.startDuration.record(seconds, {
      [ATTR_FERRY_RUNTIME]: runtime,
      [ATTR_FERRY_OUTCOME]: outcome,
    })
    if (outcome === 'ok') this.sessionsStarted.add(1, { [ATTR_FERRY_RUNTIME]: runtime })
  }

  sessionEnd(reason: ExitReason, seconds: number): void {
    this.sessionsEnded.add(1, { [ATTR_FERRY_END_REASON]: reason })
    this.sessionDuration.record(seconds, { [ATTR_FERRY_END_REASON]: reason })
  }

  relayError(kind: string): void {
    this.relayErrors.add(1, { [ATTR_FERRY_RELAY_ERROR]: kind })
  }

  evicted(count: number): void {
    this.evictions.add(count)
  }

  /** Everything, in the Prometheus text exposition format. */
  async scrape(): Promise<string> {
    const { resourceMetrics } = await this.prometheus.collect()
    return this.serializer.serialize(resourceMetrics)
  }

  /** Pushes what OTLP readers have not sent yet and stops them. */
  shutdown(): Promise<void> {
    return this.provider.shutdown()
  }
}
