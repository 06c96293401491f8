/**
 * The session's spans, in process: a bare `TracerProvider` with a `SimpleSpanProcessor` into an
 * `InMemorySpanExporter`, flushed before each assertion.
 */
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import {
  type ReadableSpan,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace'
import { beforeEach, describe, expect, it } from 'vitest'
import {
  type BridgeFrameHeader,
  type SidecarFrameHeader,
  parseTraceparent,
  silentLogger,
} from '@ferry/shared'
import { EventLog } from '../session/event-log.ts'
import { type BridgePeer, SidecarSession } from '../session/sidecar-session.ts'
import { OtelSessionTracer } from './otel-session-tracer.ts'

const exporter = new InMemorySpanExporter()
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })

beforeEach(() => exporter.reset())

const finished = async (): Promise<ReadableSpan[]> => {
  await provider.forceFlush()
  return exporter.getFinishedSpans()
}

const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c'
const BRIDGE_SPAN = `00-${CLIENT_TRACE}-00f067aa0ba902b7-01`

const setup = () => {
  const sent: Array<{ header: SidecarFrameHeader; payload: string | undefined }> = []
  const peer: BridgePeer = { id: 1, send: (header, payload) => void sent.push({ header, payload }) }
  const lines: string[] = []
  const session = new SidecarSession({
    log: new EventLog({ maxEvents: 100, maxBytes: 1 << 20, maxAgeMs: 60_000 }),
    server: { send: (line) => (lines.push(line), true) },
    logger: silentLogger,
    idleTimeoutMs: 60_000,
    tracer: new OtelSessionTracer(provider.getTracer('test'), 'ferry-session-name'),
  })
  session.addPeer(peer)
  const frame = (header: BridgeFrameHeader, message: unknown) =>
    session.handleBridgeFrame(peer, { header, payload: JSON.stringify(message) })
  const fromServer = (message: unknown) => session.handleServerLine(JSON.stringify(message))
  const written = () => lines.map((line) => JSON.parse(line) as { params?: { _meta?: object } })
  return { session, sent, frame, fromServer, written }
}

const call = (id: number, name: string, meta?: Record<string, unknown>) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: {}, ...(meta ? { _meta: meta } : {}) },
})

describe('the sidecar session with a tracer', () => {
  it("continues the frame's context and hands its own span to the server", async () => {
    const { frame, fromServer, written, sent } = setup()
    frame({ t: 'req', ch: 1, tp: BRIDGE_SPAN }, call(7, 'echo', { baggage: 'k=v' }))
    const meta = written()[0]!.params!._meta as Record<string, string>
    fromServer({ jsonrpc: '2.0', id: 7, result: { content: [] } })
    const [span] = await finished()
    expect(span).toMatchObject({
      name: 'tools/call echo',
      kind: SpanKind.SERVER,
      attributes: {
        'mcp.method.name': 'tools/call',
        'mcp.session.id': 'ferry-session-name',
        'jsonrpc.request.id': '7',
        'gen_ai.tool.name': 'echo',
        'gen_ai.operation.name': 'execute_tool',
        'network.protocol.name': 'websocket',
      },
    })
    expect(span!.spanContext().traceId).toBe(CLIENT_TRACE)
    expect(span!.parentSpanContext?.spanId).toBe('00f067aa0ba902b7')
    expect(meta).toEqual({
      baggage: 'k=v',
      traceparent: `00-${CLIENT_TRACE}-${span!.spanContext().spanId}-01`,
    })
    expect(span!.status.code).toBe(SpanStatusCode.UNSET)
    // A response carries no trace context of its own back to the bridge.
    expect(sent[0]!.header).not.toHaveProperty('tp')
  })

  it("falls back to the message's _meta context when the frame has none", async () => {
    const { frame, fromServer } = setup()
    const clientSpan = `00-${CLIENT_TRACE}-b7ad6b7169203331-01`
    frame({ t: 'req', ch: 1 }, call(1, 'x', { traceparent: clientSpan, tracestate: 'c=1' }))
    fromServer({ jsonrpc: '2.0', id: 1, result: { content: [], isError: true } })
    const [span] = await finished()
    expect(span!.parentSpanContext).toMatchObject({ spanId: 'b7ad6b7169203331', isRemote: true })
    expect(span!.spanContext().traceState?.serialize()).toBe('c=1')
    expect(span!.attributes['error.type']).toBe('tool_error')
    expect(span!.attributes).not.toHaveProperty('rpc.response.status_code')
    expect(span!.status.code).toBe(SpanStatusCode.ERROR)
  })

  it('records a JSON-RPC error as error.type and rpc.response.status_code', async () => {
    const { frame, fromServer } = setup()
    frame({ t: 'req', ch: 1 }, call(1, 'x'))
    fromServer({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'Unknown tool' } })
    const [span] = await finished()
    expect(span!.attributes).toMatchObject({
      'error.type': '-32602',
      'rpc.response.status_code': '-32602',
    })
    expect(span!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'Unknown tool' })
  })

  it('traces server messages back: a CLIENT span, child of the request, in the ev frame', async () => {
    const { frame, fromServer, sent } = setup()
    frame({ t: 'req', ch: 1, tp: BRIDGE_SPAN }, call(1, 'slow', { progressToken: 'p' }))
    fromServer({
      jsonrpc: '2.0',
      method: 'notifications/progress',
      params: { progressToken: 'p', progress: 1 },
    })
    fromServer({ jsonrpc: '2.0', id: 'sample', method: 'sampling/createMessage', params: {} })
    frame({ t: 'msg', ch: 2 }, { jsonrpc: '2.0', id: 'sample', result: { content: [] } })
    fromServer({ jsonrpc: '2.0', id: 1, result: { content: [] } })
    const spans = await finished()
    const byName = new Map(spans.map((s) => [s.name, s]))
    const request = byName.get('tools/call slow')!
    for (const name of ['notifications/progress', 'sampling/createMessage']) {
      const span = byName.get(name)!
      expect(span.kind).toBe(SpanKind.CLIENT)
      expect(span.attributes['network.transport']).toBe('pipe')
      expect(span.parentSpanContext?.spanId).toBe(request.spanContext().spanId)
      const ev = sent.find((f) => f.payload?.includes(`"${name}"`))!
      expect(parseTraceparent((ev.header as { tp: string }).tp)?.spanId).toBe(
        span.spanContext().spanId
      )
    }
    expect(byName.get('sampling/createMessage')!.attributes['jsonrpc.request.id']).toBe('sample')
  })

  it('records the negotiated protocol version on spans after initialize', async () => {
    const { frame, fromServer } = setup()
    frame({ t: 'req', ch: 1 }, { jsonrpc: '2.0', id: 0, method: 'initialize', params: {} })
    fromServer({ jsonrpc: '2.0', id: 0, result: { protocolVersion: '2025-11-25' } })
    frame({ t: 'msg', ch: 2 }, { jsonrpc: '2.0', method: 'notifications/initialized' })
    const spans = await finished()
    expect(spans.map((s) => [s.name, s.attributes['mcp.protocol.version']])).toEqual([
      ['initialize', undefined],
      ['notifications/initialized', '2025-11-25'],
    ])
  })

  it('ends what is still open when the session closes or the client cancels', async () => {
    const { session, frame, fromServer } = setup()
    frame({ t: 'req', ch: 1 }, call(1, 'a'))
    frame({ t: 'req', ch: 2 }, call(2, 'b'))
    // Two requests in flight: the server's request goes to the standalone stream.
    fromServer({ jsonrpc: '2.0', id: 's', method: 'roots/list' })
    frame(
      { t: 'msg', ch: 3 },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2 } }
    )
    session.close({ reason: 'deleted' }, 'The session was deleted')
    const spans = await finished()
    const errorOf = (name: string) => spans.find((s) => s.name === name)!.attributes['error.type']
    expect(errorOf('tools/call b')).toBe('cancelled')
    expect(errorOf('tools/call a')).toBe('-32000')
    expect(errorOf('roots/list')).toBe('session_ended')
  })
})
