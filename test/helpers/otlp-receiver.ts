/**
 * @module test/helpers/otlp-receiver
 *
 * A minimal OTLP/HTTP receiver for end-to-end tests: it records every request it gets (any path,
 * any content type) and decodes OTLP/JSON trace exports (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`)
 * into flat spans with their service name.
 */
import { createServer, type Server } from 'node:http'

/** One received span, with ids as hex and attributes as plain values. */
export interface ReceivedSpan {
  service: string
  traceId: string
  spanId: string
  parentSpanId: string
  name: string
  /** OTLP span kind: 1 internal, 2 server, 3 client. */
  kind: number
  attributes: Record<string, unknown>
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  status: number
  links: Array<{ traceId: string; spanId: string }>
  events: string[]
}

export const SpanKindCode = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const

interface AnyValue {
  stringValue?: string
  intValue?: string | number
  boolValue?: boolean
  doubleValue?: number
}
interface KeyValue {
  key: string
  value: AnyValue
}
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes?: KeyValue[]
  status?: { code?: number }
  links?: Array<{ traceId: string; spanId: string }>
  events?: Array<{ name: string }>
}
interface OtlpTraces {
  resourceSpans?: Array<{
    resource?: { attributes?: KeyValue[] }
    scopeSpans?: Array<{ spans?: OtlpSpan[] }>
  }>
}

const valueOf = (value: AnyValue): unknown =>
  value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue
const attributesOf = (list: KeyValue[] = []) =>
  Object.fromEntries(list.map(({ key, value }) => [key, valueOf(value)]))

export interface ReceivedRequest {
  method: string
  url: string
  contentType: string
  body: string
}

export class OtlpReceiver {
  readonly requests: ReceivedRequest[] = []
  private readonly server: Server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      this.requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body,
      })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })

  /** Listens on `host:port` (port 0: any free one). */
  static async start(host = '127.0.0.1', port = 0): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver()
    await new Promise<void>((resolve, reject) => {
      receiver.server.once('error', reject)
      receiver.server.listen(port, host, () => resolve())
    })
    return receiver
  }

  /** The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  get endpoint(): string {
    const address = this.server.address() as { address: string; port: number }
    return `http://127.0.0.1:${address.port}`
  }

  /** Every span of every JSON trace export received so far. */
  spans(): ReceivedSpan[] {
    return this.requests
      .filter((r) => r.url === '/v1/traces' && r.contentType.startsWith('application/json'))
      .flatMap((r) => (JSON.parse(r.body) as OtlpTraces).resourceSpans ?? [])
      .flatMap((resourceSpans) => {
        const service = String(attributesOf(resourceSpans.resource?.attributes)['service.name'])
        return (resourceSpans.scopeSpans ?? []).flatMap((scope) =>
          (scope.spans ?? []).map((span) => ({
            service,
            traceId: span.traceId,
            spanId: span.spanId,
            parentSpanId: span.parentSpanId ?? '',
            name: span.name,
            kind: span.kind,
            attributes: attributesOf(span.attributes),
            status: span.status?.code ?? 0,
            links: (span.links ?? []).map(({ traceId, spanId }) => ({ traceId, spanId })),
            events: (span.events ?? []).map((event) => event.name),
          }))
        )
      })
  }

  /** Waits until `find` returns something from the spans received, or fails after `timeoutMs`. */
  async waitFor<T>(
    find: (spans: ReceivedSpan[]) => T | undefined,
    what: string,
    timeoutMs = 15_000
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = find(this.spans())
      if (found !== undefined) return found
      if (Date.now() > deadline) {
        const seen = this.spans().map((s) => `${s.service} ${s.name}`)
        throw new Error(`timed out waiting for ${what}; received: ${JSON.stringify(seen)}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
