import { createServer } from 'node:http'
import { SpanKind } from '@opentelemetry/api'
import { describe, expect, it } from 'vitest'
import { startTelemetry } from './sdk.ts'

describe('startTelemetry', () => {
  it('starts nothing without an OTLP endpoint', async () => {
    const telemetry = await startTelemetry({})
    expect(telemetry.tracer).toBeUndefined()
    expect(telemetry.metricReaders).toEqual([])
    await telemetry.shutdown()
    const disabled = await startTelemetry({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1',
      OTEL_SDK_DISABLED: 'true',
    })
    expect(disabled.tracer).toBeUndefined()
    expect(disabled.metricReaders).toEqual([])
  })

  it('exports spans as ferry-bridge to the configured endpoint, flushed on shutdown', async () => {
    const bodies: string[] = []
    const receiver = createServer((req, res) => {
      let body = ''
      req.on('data', (chunk: Buffer) => (body += chunk.toString()))
      req.on('end', () => {
        bodies.push(`${req.url} ${body}`)
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      })
    })
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
    const port = (receiver.address() as { port: number }).port
    const env = {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${port}/v1/traces`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    }
    // NodeSDK reads the environment itself.
    Object.assign(process.env, env)
    try {
      const telemetry = await startTelemetry(env)
      expect(telemetry.metricReaders).toEqual([])
      telemetry.tracer!.startSpan('probe', { kind: SpanKind.SERVER }).end()
      await telemetry.shutdown()
    } finally {
      for (const name of Object.keys(env)) delete process.env[name]
      receiver.close()
    }
    expect(bodies).toHaveLength(1)
    expect(bodies[0]).toMatch(/^\/v1\/traces /)
    expect(bodies[0]).toContain('"stringValue":"ferry-bridge"')
    expect(bodies[0]).toContain('"name":"probe"')
  })
})
