/**
 * @module test/e2e/tracing
 *
 * Tracing across processes: a `ferry serve` process and the sidecars it starts export OTLP/HTTP
 * (JSON) to a receiver in this test, and one trace connects the client's span, the bridge's, the
 * sidecar's and the `_meta.traceparent` the fixture server received. Unconfigured, nothing at all
 * is exported, not even to the OTLP default endpoint.
 */
import { SpanKind } from '@opentelemetry/api'
import { TracerProvider } from '@opentelemetry/sdk-trace'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { formatTraceparent, parseTraceparent } from '@ferry/shared'
import {
  type BridgeProcess,
  killSidecars,
  standardServers,
  startBridgeProcess,
  tempDir,
  writeCatalog,
} from '../helpers/bridge.ts'
import { SdkClients, textOf } from '../helpers/mcp.ts'
import { type ReceivedSpan, OtlpReceiver, SpanKindCode } from '../helpers/otlp-receiver.ts'

const clients = new SdkClients()
const bridges: BridgeProcess[] = []
const receivers: OtlpReceiver[] = []

afterEach(() => clients.closeAll())
afterAll(async () => {
  for (const bridge of bridges) {
    const sidecars = bridge.sidecarPids()
    await bridge.stop()
    await killSidecars(sidecars)
  }
  await Promise.all(receivers.map((receiver) => receiver.close()))
})

const catalogFile = () =>
  writeCatalog(tempDir('ferry-tracing-'), {
    bridge: { host: '127.0.0.1', logLevel: 'info' },
    servers: { fixture: standardServers().fixture },
  })

const startBridge = async (env: NodeJS.ProcessEnv) => {
  const bridge = await startBridgeProcess({ catalogFile: catalogFile(), env })
  bridges.push(bridge)
  return bridge
}

/** The test's own client-side spans (no exporter: only their ids travel). */
const tracer = new TracerProvider().getTracer('e2e-client')
const clientSpan = () => {
  const span = tracer.startSpan('client tools/call', { kind: SpanKind.CLIENT })
  span.end()
  const { traceId, spanId, traceFlags } = span.spanContext()
  return { traceId, spanId, traceparent: formatTraceparent(traceId, spanId, traceFlags) }
}

describe('tracing across bridge and sidecar processes', () => {
  let receiver: OtlpReceiver
  let bridge: BridgeProcess
  beforeAll(async () => {
    receiver = await OtlpReceiver.start()
    receivers.push(receiver)
    bridge = await startBridge({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRICS_EXPORTER: 'none',
    })
  })

  /** The bridge's and the sidecar's SERVER spans in `traceId` named `name`. */
  const chainOf = (spans: ReceivedSpan[], traceId: string, name: string) => {
    const server = spans.filter(
      (s) => s.traceId === traceId && s.name === name && s.kind === SpanKindCode.SERVER
    )
    const bridgeSpan = server.find((s) => s.service === 'ferry-bridge')
    const sidecarSpan = server.find((s) => s.service === 'ferry-sidecar')
    return bridgeSpan && sidecarSpan ? { bridgeSpan, sidecarSpan } : undefined
  }

  it('connects client → bridge → sidecar → server for a call with progress', async () => {
    const { client } = await clients.connect(bridge.url('fixture'))
    const caller = clientSpan()
    const progress: number[] = []
    const result = await client.callTool(
      { name: 'ferry_meta', arguments: {}, _meta: { traceparent: caller.traceparent } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) }
    )
    expect(progress).toEqual([1])
    const seen = JSON.parse(textOf(result)) as Record<string, unknown>
    const { bridgeSpan, sidecarSpan } = await receiver.waitFor(
      (spans) => chainOf(spans, caller.traceId, 'tools/call ferry_meta'),
      'the bridge and sidecar spans of the call'
    )
    expect(bridgeSpan.parentSpanId).toBe(caller.spanId)
    expect(sidecarSpan.parentSpanId).toBe(bridgeSpan.spanId)
    expect(parseTraceparent(seen.traceparent as string)).toEqual({
      traceId: caller.traceId,
      spanId: sidecarSpan.spanId,
      traceFlags: 1,
    })
    expect(seen.progressToken).toBeDefined()
    for (const span of [bridgeSpan, sidecarSpan]) {
      expect(span.attributes).toMatchObject({
        'mcp.method.name': 'tools/call',
        'gen_ai.tool.name': 'ferry_meta',
        'gen_ai.operation.name': 'execute_tool',
        'mcp.protocol.version': '2025-11-25',
      })
      expect(span.attributes['mcp.session.id']).toMatch(/^ferry-[a-z2-7]{16}$/)
      expect(span.status).toBe(0)
    }
    expect(bridgeSpan.attributes['network.protocol.name']).toBe('http')
    expect(sidecarSpan.attributes['network.protocol.name']).toBe('websocket')
    // The progress notification is traced back: a sidecar CLIENT span the bridge links to.
    const progressSpan = await receiver.waitFor(
      (spans) =>
        spans.find(
          (s) => s.name === 'notifications/progress' && s.parentSpanId === sidecarSpan.spanId
        ),
      'the progress span'
    )
    expect(progressSpan).toMatchObject({ service: 'ferry-sidecar', kind: SpanKindCode.CLIENT })
    expect(bridgeSpan.links).toEqual([{ traceId: caller.traceId, spanId: progressSpan.spanId }])
  })

  it('connects the spans of a failed call and marks them as errors', async () => {
    const { client } = await clients.connect(bridge.url('fixture'))
    const caller = clientSpan()
    await expect(
      client.callTool({
        name: 'no_such_tool',
        arguments: {},
        _meta: { traceparent: caller.traceparent },
      })
    ).rejects.toThrow(/Unknown tool/)
    const { bridgeSpan, sidecarSpan } = await receiver.waitFor(
      (spans) => chainOf(spans, caller.traceId, 'tools/call no_such_tool'),
      'the spans of the failed call'
    )
    expect(bridgeSpan.parentSpanId).toBe(caller.spanId)
    expect(sidecarSpan.parentSpanId).toBe(bridgeSpan.spanId)
    for (const span of [bridgeSpan, sidecarSpan]) {
      expect(span.status).toBe(2)
      expect(span.attributes).toMatchObject({
        'error.type': '-32602',
        'rpc.response.status_code': '-32602',
      })
    }
  })

  it('traces the session start and logs it with its trace and span ids', async () => {
    await clients.connect(bridge.url('fixture'))
    const start = await receiver.waitFor(
      (spans) =>
        spans.find(
          (s) => s.name === 'ferry.session.start' && s.events.includes('initialize.answered')
        ),
      'a session-start span'
    )
    // A local start first takes its turn at the start gate (on by default).
    expect(start.events).toEqual([
      'start.admitted',
      'workload.ready',
      'sidecar.connected',
      'initialize.answered',
    ])
    const log = bridge.logs.find(
      (line) => line.msg === 'session started' && line.span_id === start.spanId
    )
    expect(log).toMatchObject({
      trace_id: start.traceId,
      session: start.attributes['mcp.session.id'],
      server: 'fixture',
      request: 0,
      queueMs: expect.any(Number),
    })
  })

  it('serves /metrics counting the calls by method and outcome', async () => {
    const text = await (await fetch(`http://127.0.0.1:${bridge.port}/metrics`)).text()
    expect(text).toMatch(
      /^mcp_server_operation_duration_count\{mcp_method_name="tools\/call"\} 1$/m
    )
    expect(text).toMatch(
      /^mcp_server_operation_duration_count\{mcp_method_name="tools\/call",error_type="-32602"\} 1$/m
    )
    expect(text).toMatch(/^ferry_sessions_started_total\{ferry_runtime="local"\} 3$/m)
  })
})

describe('tracing unconfigured', () => {
  it('exports nothing, not even to the default OTLP endpoint', async () => {
    // Where an SDK started without configuration would send: localhost:4318.
    let receiver: OtlpReceiver
    try {
      receiver = await OtlpReceiver.start('::', 4318)
    } catch {
      receiver = await OtlpReceiver.start('127.0.0.1', 4318)
    }
    receivers.push(receiver)
    const bridge = await startBridge({})
    const { client } = await clients.connect(bridge.url('fixture'))
    const caller = clientSpan()
    const result = await client.callTool({
      name: 'ferry_meta',
      arguments: {},
      _meta: { traceparent: caller.traceparent },
    })
    // Untraced, the client's context reaches the server as it was sent.
    expect(JSON.parse(textOf(result))).toEqual({ traceparent: caller.traceparent })
    await clients.closeAll()
    const sidecars = bridge.sidecarPids()
    // Stopping flushes whatever would have been buffered.
    await bridge.stop()
    await killSidecars(sidecars)
    expect(receiver.requests).toEqual([])
  })
})
