/**
 * @module
 * The MCP endpoint's telemetry through the whole chain, in one process: the bridge's app (driven
 * with `app.request()`), sidecars run in process by a test runtime (`runSidecar`), and the
 * conformance fixture as the stdio server. Both sides trace into one bare `TracerProvider` with
 * an `InMemorySpanExporter`; `/metrics` is scraped after the workload.
 */
import { fileURLToPath } from 'node:url'
import { SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api'
import {
  type ReadableSpan,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  CatalogSchema,
  formatTraceparent,
  parseTraceparent,
  sidecarVerifier,
  silentLogger,
} from '@ferry/shared'
import { type RunningSidecar, runSidecar } from '@ferry/sidecar'
import { OtelSessionTracer } from '@ferry/sidecar/tracing'
import { type Bridge, createBridge } from '../bridge.ts'
import {
  type SessionRuntime,
  type Workload,
  type WorkloadRef,
  type WorkloadSpec,
  WorkloadStartError,
} from '../runtime/runtime.ts'
import { Keyring } from '../session/keyring.ts'

const FIXTURE = fileURLToPath(
  new URL('../../../test/fixtures/conformance-server.ts', import.meta.url)
)
const ORIGIN = 'http://localhost'

const exporter = new InMemorySpanExporter()
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })
const tracer = provider.getTracer('ferry-test')

/** Runs each session's sidecar inside this process, tracing into the test's provider. */
class InProcessRuntime implements SessionRuntime {
  readonly kind = 'local'
  readonly sidecars = new Map<string, RunningSidecar>()
  private readonly tracer: Tracer | undefined

  constructor(tracer?: Tracer) {
    this.tracer = tracer
  }

  async start(spec: WorkloadSpec): Promise<Workload> {
    const server = spec.server as { command: string; args: string[] }
    let sidecar: RunningSidecar
    try {
      sidecar = await runSidecar({
        command: server.command,
        args: server.args,
        env: process.env,
        sessionName: spec.sessionName,
        verifier: await sidecarVerifier(spec.secret),
        host: '127.0.0.1',
        port: 0,
        idleTimeoutMs: 60_000,
        stopGraceMs: 1000,
        maxLineBytes: 1 << 20,
        maxPayload: 1 << 20,
        heartbeatMs: 60_000,
        eventLog: { maxEvents: 100, maxBytes: 1 << 20, maxAgeMs: 60_000 },
        logLevel: 'silent',
        logger: silentLogger,
        ...(this.tracer
          ? { tracer: new OtelSessionTracer(this.tracer, spec.sessionName, async () => {}) }
          : {}),
      })
    } catch (error) {
      throw new WorkloadStartError('spawn', (error as Error).message)
    }
    this.sidecars.set(spec.sessionName, sidecar)
    void sidecar.done.then(() => this.sidecars.delete(spec.sessionName))
    return { address: `ws://127.0.0.1:${sidecar.port}` }
  }

  async stop(workload: WorkloadRef): Promise<void> {
    await this.sidecars.get(workload.sessionName)?.done
  }

  activeSessions(): number {
    return this.sidecars.size
  }

  async stopAll(): Promise<void> {
    const all = [...this.sidecars.values()]
    for (const sidecar of all) sidecar.stop('shutdown')
    await Promise.all(all.map((sidecar) => sidecar.done))
  }

  async close(): Promise<void> {}
}

const catalog = CatalogSchema.parse({
  bridge: { logLevel: 'silent', startTimeout: '15s' },
  servers: {
    fixture: { runtime: 'local', command: process.execPath, args: [FIXTURE] },
    broken: { runtime: 'local', command: '/nonexistent/ferry-test-server', args: [] },
  },
})

const setups: Array<{ bridge: Bridge; runtime: InProcessRuntime }> = []
const newBridge = async (traced: boolean) => {
  const runtime = new InProcessRuntime(traced ? tracer : undefined)
  const bridge = createBridge({
    catalog,
    keyring: await Keyring.generate(),
    logger: silentLogger,
    runtimes: { local: runtime },
    ...(traced ? { tracer } : {}),
  })
  setups.push({ bridge, runtime })
  return bridge
}

afterAll(async () => {
  for (const { bridge, runtime } of setups) {
    await runtime.stopAll()
    await bridge.close()
  }
})

beforeEach(() => exporter.reset())

const finishedSpans = async (): Promise<ReadableSpan[]> => {
  await provider.forceFlush()
  return exporter.getFinishedSpans()
}

const HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
}

const post = (bridge: Bridge, server: string, body: unknown, headers: Record<string, string>) =>
  bridge.app.request(`${ORIGIN}/${server}/mcp`, {
    method: 'POST',
    headers: { ...HEADERS, ...headers },
    body: JSON.stringify(body),
  })

interface Session {
  id: string
  headers: (extra?: Record<string, string>) => Record<string, string>
}

const openSession = async (bridge: Bridge): Promise<Session> => {
  const response = await post(
    bridge,
    'fixture',
    {
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 'trace-test', version: '1.0.0' },
      },
    },
    {}
  )
  const id = response.headers.get('mcp-session-id')!
  await response.text()
  const headers = (extra: Record<string, string> = {}) => ({
    'mcp-session-id': id,
    'mcp-protocol-version': '2025-11-25',
    ...extra,
  })
  await post(bridge, 'fixture', { jsonrpc: '2.0', method: 'notifications/initialized' }, headers())
  return { id, headers }
}

/** The JSON-RPC messages of a JSON or SSE answer. */
const messagesOf = async (response: Response): Promise<Array<Record<string, unknown>>> => {
  const text = await response.text()
  if (!response.headers.get('content-type')?.startsWith('text/event-stream')) {
    return [JSON.parse(text)]
  }
  return text
    .split('\n')
    .filter((line) => line.startsWith('data: ') && line.length > 6)
    .map((line) => JSON.parse(line.slice(6)))
}

const toolCall = (
  id: number,
  name: string,
  meta?: Record<string, unknown>,
  args: Record<string, unknown> = {}
) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) },
})

/** A client-side span to continue, and its traceparent. */
const clientSpan = () => {
  const span = tracer.startSpan('client', { kind: SpanKind.CLIENT })
  span.end()
  const { traceId, spanId, traceFlags } = span.spanContext()
  return { traceId, spanId, traceparent: formatTraceparent(traceId, spanId, traceFlags) }
}

const named = (spans: ReadableSpan[], name: string, kind: SpanKind) =>
  spans.filter((span) => span.name === name && span.kind === kind)
/** The bridge's and the sidecar's SERVER span of a message, told apart by the leg they face. */
const serverSpans = (spans: ReadableSpan[], name: string) => {
  const all = named(spans, name, SpanKind.SERVER)
  const on = (protocol: string) =>
    all.filter((span) => span.attributes['network.protocol.name'] === protocol)
  return { bridge: on('http'), sidecar: on('websocket') }
}

describe('tracing through bridge, sidecar and server', () => {
  let bridge: Bridge
  let session: Session
  beforeAll(async () => {
    bridge = await newBridge(true)
    session = await openSession(bridge)
  })

  it('chains client → bridge → sidecar → server, and links the HTTP context', async () => {
    const client = clientSpan()
    const http = clientSpan()
    const response = await post(
      bridge,
      'fixture',
      toolCall(1, 'ferry_meta', { traceparent: client.traceparent, baggage: 'user=42' }),
      session.headers({ traceparent: http.traceparent })
    )
    const [answer] = await messagesOf(response)
    const seen = JSON.parse(
      (answer!.result as { content: Array<{ text: string }> }).content[0]!.text
    ) as Record<string, string>
    const spans = await finishedSpans()
    const {
      bridge: [bridgeSpan],
      sidecar: [sidecarSpan],
    } = serverSpans(spans, 'tools/call ferry_meta')
    expect(bridgeSpan!.spanContext().traceId).toBe(client.traceId)
    expect(bridgeSpan!.parentSpanContext?.spanId).toBe(client.spanId)
    expect(bridgeSpan!.links.map((link) => link.context.spanId)).toEqual([http.spanId])
    expect(sidecarSpan!.parentSpanContext?.spanId).toBe(bridgeSpan!.spanContext().spanId)
    expect(parseTraceparent(seen.traceparent!)).toEqual({
      traceId: client.traceId,
      spanId: sidecarSpan!.spanContext().spanId,
      traceFlags: 1,
    })
    expect(seen.baggage).toBe('user=42')
    const sessionName = bridgeSpan!.attributes['mcp.session.id']
    expect(sessionName).toMatch(/^ferry-[a-z2-7]{16}$/)
    expect(JSON.stringify(spans.map((span) => span.attributes))).not.toContain(session.id)
    for (const span of [bridgeSpan!, sidecarSpan!]) {
      expect(span.attributes).toMatchObject({
        'mcp.method.name': 'tools/call',
        'mcp.session.id': sessionName,
        'mcp.protocol.version': '2025-11-25',
        'jsonrpc.request.id': '1',
        'gen_ai.tool.name': 'ferry_meta',
        'gen_ai.operation.name': 'execute_tool',
      })
      expect(span.status.code).toBe(SpanStatusCode.UNSET)
    }
  })

  it('continues the HTTP traceparent when the message carries none', async () => {
    const http = clientSpan()
    await messagesOf(
      await post(
        bridge,
        'fixture',
        toolCall(2, 'ferry_echo', undefined, { text: 'hi' }),
        session.headers({ traceparent: http.traceparent })
      )
    )
    const [bridgeSpan] = serverSpans(await finishedSpans(), 'tools/call ferry_echo').bridge
    expect(bridgeSpan!.parentSpanContext?.spanId).toBe(http.spanId)
    expect(bridgeSpan!.links).toEqual([])
  })

  it("ends a streamed call's span with its stream and links the sidecar's progress span", async () => {
    const client = clientSpan()
    const response = await post(
      bridge,
      'fixture',
      toolCall(3, 'ferry_meta', { traceparent: client.traceparent, progressToken: 'p3' }),
      session.headers()
    )
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const messages = await messagesOf(response)
    expect(messages.map((m) => m.method ?? 'response')).toEqual([
      'notifications/progress',
      'response',
    ])
    const spans = await finishedSpans()
    const {
      bridge: [bridgeSpan],
      sidecar: [sidecarSpan],
    } = serverSpans(spans, 'tools/call ferry_meta')
    const [progress] = named(spans, 'notifications/progress', SpanKind.CLIENT)
    expect(sidecarSpan!.parentSpanContext?.spanId).toBe(bridgeSpan!.spanContext().spanId)
    expect(progress!.parentSpanContext?.spanId).toBe(sidecarSpan!.spanContext().spanId)
    expect(bridgeSpan!.links.map((link) => link.context.spanId)).toEqual([
      progress!.spanContext().spanId,
    ])
  })

  it('ends an SSE span when its stream ends, not when the handler returns', async () => {
    // Progress at 80 and 160 ms, then the result: the handler returns at the first event.
    const response = await post(
      bridge,
      'fixture',
      toolCall(6, 'ferry_progress', { progressToken: 'p6' }, { count: 2, intervalMs: 80 }),
      session.headers()
    )
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    await messagesOf(response)
    const [span] = serverSpans(await finishedSpans(), 'tools/call ferry_progress').bridge
    const [seconds, nanos] = span!.duration
    expect(seconds * 1000 + nanos / 1e6).toBeGreaterThanOrEqual(150)
  })

  it('marks failed calls: tool errors and JSON-RPC errors', async () => {
    await messagesOf(
      await post(bridge, 'fixture', toolCall(4, 'test_error_handling'), session.headers())
    )
    await messagesOf(await post(bridge, 'fixture', toolCall(5, 'no_such_tool'), session.headers()))
    const spans = await finishedSpans()
    for (const span of named(spans, 'tools/call test_error_handling', SpanKind.SERVER)) {
      expect(span.attributes['error.type']).toBe('tool_error')
      expect(span.attributes).not.toHaveProperty('rpc.response.status_code')
      expect(span.status.code).toBe(SpanStatusCode.ERROR)
    }
    const failed = named(spans, 'tools/call no_such_tool', SpanKind.SERVER)
    expect(failed).toHaveLength(2)
    for (const span of failed) {
      expect(span.attributes).toMatchObject({
        'error.type': '-32602',
        'rpc.response.status_code': '-32602',
      })
      expect(span.status.code).toBe(SpanStatusCode.ERROR)
    }
  })

  it('traces session start as its own span, phase by phase', async () => {
    await openSession(bridge)
    const spans = await finishedSpans()
    const {
      bridge: [initialize],
      sidecar: [forwarded],
    } = serverSpans(spans, 'initialize')
    const [start] = named(spans, 'ferry.session.start', SpanKind.INTERNAL)
    expect(start!.parentSpanContext?.spanId).toBe(initialize!.spanContext().spanId)
    expect(forwarded!.parentSpanContext?.spanId).toBe(start!.spanContext().spanId)
    // Local starts are gated by default, so the first phase is the start's turn.
    expect(start!.events.map((event) => event.name)).toEqual([
      'start.admitted',
      'workload.ready',
      'sidecar.connected',
      'initialize.answered',
    ])
    expect(start!.attributes).toMatchObject({ 'ferry.server': 'fixture', 'ferry.runtime': 'local' })
    expect(initialize!.attributes['mcp.protocol.version']).toBe('2025-11-25')
    expect(start!.attributes['mcp.session.id']).toBe(initialize!.attributes['mcp.session.id'])
  })

  it('records why a session start failed', async () => {
    const response = await post(
      bridge,
      'broken',
      { jsonrpc: '2.0', id: 0, method: 'initialize', params: {} },
      {}
    )
    expect(((await response.json()) as { error: { code: number } }).error.code).toBe(-32000)
    const spans = await finishedSpans()
    const [start] = named(spans, 'ferry.session.start', SpanKind.INTERNAL)
    expect(start!.events.map((event) => event.name)).toEqual([
      'start.admitted',
      'session.start.failed',
    ])
    expect(start!.attributes['error.type']).toBe('spawn')
    expect(start!.status).toMatchObject({
      code: SpanStatusCode.ERROR,
      message: expect.stringMatching(/ferry-test-server/),
    })
    expect(named(spans, 'initialize', SpanKind.SERVER)[0]!.attributes['error.type']).toBe('-32000')
  })

  it('serves the workload as Prometheus metrics', async () => {
    const scrape = async () => {
      const response = await bridge.app.request(`${ORIGIN}/metrics`)
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
      return parsePrometheus(await response.text())
    }
    const metrics = await scrape()
    /** The sample with exactly these labels. */
    const value = (name: string, labels: Record<string, string> = {}) =>
      metrics.find((m) => m.name === name && JSON.stringify(m.labels) === JSON.stringify(labels))
        ?.value
    const calls = { mcp_method_name: 'tools/call' }
    expect(value('mcp_server_operation_duration_count', calls)).toBe(4)
    expect(
      value('mcp_server_operation_duration_count', { ...calls, error_type: 'tool_error' })
    ).toBe(1)
    expect(value('mcp_server_operation_duration_count', { ...calls, error_type: '-32602' })).toBe(1)
    expect(
      value('mcp_server_operation_duration_count', {
        mcp_method_name: 'notifications/initialized',
      })
    ).toBe(2)
    expect(value('ferry_sessions_started_total', { ferry_runtime: 'local' })).toBe(2)
    expect(
      value('ferry_session_start_duration_count', {
        ferry_runtime: 'local',
        ferry_outcome: 'spawn',
      })
    ).toBe(1)
    expect(value('ferry_sessions_active', { ferry_runtime: 'local' })).toBe(2)
    expect(value('ferry_sidecar_connections')).toBe(2)
    // No label holds a session id or name.
    expect(JSON.stringify(metrics)).not.toMatch(/ferry-[a-z2-7]{16}/)

    const deleted = await bridge.app.request(`${ORIGIN}/fixture/mcp`, {
      method: 'DELETE',
      headers: session.headers(),
    })
    expect(deleted.status).toBe(200)
    let ended: number | undefined
    for (let tries = 0; tries < 100 && ended === undefined; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      ended = (await scrape()).find(
        (m) =>
          m.name === 'ferry_sessions_ended_total' && m.labels.ferry_session_end_reason === 'deleted'
      )?.value
    }
    expect(ended).toBe(1)
  })
})

describe('with tracing off', () => {
  it("passes the client's _meta through to the server as it was sent", async () => {
    const bridge = await newBridge(false)
    const session = await openSession(bridge)
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    const meta = { traceparent, tracestate: 'vendor=1', baggage: 'k=v', 'example.com/x': 1 }
    const [answer] = await messagesOf(
      await post(bridge, 'fixture', toolCall(1, 'ferry_meta', meta), session.headers())
    )
    const seen = JSON.parse(
      (answer!.result as { content: Array<{ text: string }> }).content[0]!.text
    ) as Record<string, unknown>
    expect(seen).toEqual(meta)
    expect(await finishedSpans()).toEqual([])
  })
})

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The samples of a Prometheus text exposition (comments skipped). */
const parsePrometheus = (text: string): Sample[] =>
  text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
      if (!match) throw new Error(`not a Prometheus sample: ${line}`)
      const labels: Record<string, string> = {}
      for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[key!] = value!
      }
      return { name: match[1]!, labels, value: Number(match[3]) }
    })
