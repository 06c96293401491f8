/**
 * @module test/bench/tracing-cost
 *
 * What tracing costs per relayed request, in process and without I/O, so that only CPU counts:
 * the bridge parses and classifies the POST body, starts its operation, encodes the `req` frame;
 * the sidecar decodes it, routes it and writes the line for the server; the server's response
 * line comes back as an `ev` frame the bridge decodes, and the operation ends. Three setups:
 *
 * - `no telemetry`: the relay alone, without even the operation (and its metric) of `off`;
 * - `off`: no SDK (the default): no spans, payloads untouched;
 * - `on, not sampled`: the SDK with `always_off` (spans are made, not recorded);
 * - `on`: the SDK, every span recorded, batched and exported (to an exporter that drops them).
 *
 * Also the cost of the one metric recorded per request (always on). Run: `node test/bench/tracing-cost.ts`
 * (after `npm run build`).
 */
import type { Tracer } from '@opentelemetry/api'
import {
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace'
import { BridgeMetrics, Instrumentation } from '@ferry/bridge'
import {
  type SidecarFrameHeader,
  classifyMessage,
  decodeBridgeFrame,
  decodeSidecarFrame,
  encodeFrame,
  silentLogger,
} from '@ferry/shared'
import { EventLog, SidecarSession } from '@ferry/sidecar'
import { OtelSessionTracer } from '@ferry/sidecar/tracing'

const ROUNDS = 9
const REQUESTS = 20_000
const WARMUP = 20_000

/** Drops every span, successfully: the cost measured is Ferry's and the SDK's, not a network's. */
const nullExporter: SpanExporter = {
  export: (_spans: ReadableSpan[], done) => done({ code: 0 }),
  shutdown: async () => {},
}

const tracerWith = (sampler: Sampler): Tracer =>
  new TracerProvider({
    sampler,
    spanProcessors: [new BatchSpanProcessor({ exporter: nullExporter })],
  }).getTracer('bench')

/** One bridge + sidecar pair, relaying in memory; `instrumentation` undefined: none at all. */
const relay = (tracer: Tracer | undefined, instrumentation: Instrumentation | undefined) => {
  let toBridge = ''
  let toServer = ''
  const session = new SidecarSession({
    log: new EventLog({ maxEvents: 1000, maxBytes: 8 << 20, maxAgeMs: 600_000 }),
    server: { send: (line) => ((toServer = line), true) },
    logger: silentLogger,
    idleTimeoutMs: 600_000,
    ...(tracer ? { tracer: new OtelSessionTracer(tracer, 'ferry-benchbenchbench') } : {}),
  })
  const peer = {
    id: 1,
    send: (header: SidecarFrameHeader, payload?: string) =>
      (toBridge = encodeFrame(header, payload)),
  }
  session.addPeer(peer)
  const headers = new Headers({ 'content-type': 'application/json' })
  let id = 0
  return () => {
    id++
    const body = `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"},"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}`
    // Bridge: the POST.
    const classified = classifyMessage(JSON.parse(body))!
    if (classified.kind !== 'request') throw new Error('not a request')
    const operation = instrumentation?.begin(classified.message, headers)
    operation?.session('ferry-benchbenchbench', '2025-11-25')
    const trace = operation?.trace
    const frame = encodeFrame(
      trace ? { t: 'req', ch: id, tp: trace.tp, ts: trace.ts } : { t: 'req', ch: id },
      body
    )
    // Sidecar: to the server and back.
    session.handleBridgeFrame(peer, decodeBridgeFrame(frame)!)
    if (!toServer.includes(`"id":${id}`)) throw new Error('the server got nothing')
    session.handleServerLine(
      `{"jsonrpc":"2.0","id":${id},"result":{"content":[{"type":"text","text":"hello"}]}}`
    )
    // Bridge: the answer.
    const event = decodeSidecarFrame(toBridge)!
    if (event.header.t !== 'ev' || !event.header.fin) throw new Error('no response')
    operation?.end(event.header.errorType)
  }
}

const timePerCall = (call: () => void, count: number): number => {
  const started = process.hrtime.bigint()
  for (let i = 0; i < count; i++) call()
  return Number(process.hrtime.bigint() - started) / 1000 / count
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

const modes: Array<[string, Tracer | undefined]> = [
  ['no telemetry', undefined],
  ['off', undefined],
  ['on, not sampled', tracerWith(new AlwaysOffSampler())],
  ['on', tracerWith(new AlwaysOnSampler())],
]

const results = new Map<string, number[]>()
const metrics = new BridgeMetrics({ serviceName: 'bench' })
const calls = modes.map(
  ([name, tracer]) =>
    [
      name,
      relay(tracer, name === 'no telemetry' ? undefined : new Instrumentation(metrics, tracer)),
    ] as const
)
for (const [, call] of calls) timePerCall(call, WARMUP)
// Rounds interleave the modes, so drift (GC, CPU frequency) spreads over all of them.
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, call] of calls) {
    results.set(name, [...(results.get(name) ?? []), timePerCall(call, REQUESTS)])
  }
}
const off = median(results.get('off')!)
console.log(
  `tracing cost per relayed request (median of ${ROUNDS} × ${REQUESTS}, Node ${process.version})`
)
for (const [name] of modes) {
  const value = median(results.get(name)!)
  const delta = value >= off ? `+${(value - off).toFixed(2)}` : `-${(off - value).toFixed(2)}`
  const note = name === 'off' ? '' : `  (${delta} µs vs off)`
  console.log(`  ${name.padEnd(16)} ${value.toFixed(2).padStart(7)} µs/request${note}`)
}
const record = median(
  Array.from({ length: ROUNDS }, () =>
    timePerCall(() => metrics.operation('tools/call', undefined, 0.001), REQUESTS)
  )
)
console.log(`  metrics: ${record.toFixed(2)} µs per recorded operation (always on)`)
