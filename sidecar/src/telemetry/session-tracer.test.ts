import { describe, expect, it, vi } from 'vitest'
import { silentLogger } from '@ferry/shared'
import { loadSessionTracer } from './session-tracer.ts'

const settings = { sessionName: 's', logger: silentLogger }

describe('loadSessionTracer', () => {
  it('stays off without an OTLP endpoint, or when the SDK is disabled', async () => {
    expect(await loadSessionTracer({}, settings)).toBeUndefined()
    expect(
      await loadSessionTracer(
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_SDK_DISABLED: 'true' },
        settings
      )
    ).toBeUndefined()
    expect(
      await loadSessionTracer(
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_TRACES_EXPORTER: 'none' },
        settings
      )
    ).toBeUndefined()
  })

  it('starts with a traces endpoint, over http/protobuf or http/json', async () => {
    for (const protocol of [undefined, 'http/json']) {
      const tracer = await loadSessionTracer(
        {
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:1/v1/traces',
          ...(protocol ? { OTEL_EXPORTER_OTLP_PROTOCOL: protocol } : {}),
        },
        settings
      )
      expect(tracer).toBeDefined()
      await tracer!.shutdown(1000)
    }
  })

  it('says why and stays off for gRPC, which the sidecar does not speak', async () => {
    const warnings: unknown[] = []
    const logger = { ...silentLogger, warn: (obj: object) => void warnings.push(obj) }
    const tracer = await loadSessionTracer(
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
      { sessionName: 's', logger }
    )
    expect(tracer).toBeUndefined()
    expect(warnings).toEqual([{ protocol: 'grpc' }])
  })

  it('leaves tracing off, and says why, when the SDK cannot start', async () => {
    vi.doMock('./otlp-tracing.ts', () => ({
      startOtlpTracing: () => {
        throw new Error('no exporter')
      },
    }))
    const warnings: unknown[] = []
    const logger = { ...silentLogger, warn: (obj: object) => void warnings.push(obj) }
    const tracer = await loadSessionTracer(
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1' },
      { sessionName: 's', logger }
    )
    vi.doUnmock('./otlp-tracing.ts')
    expect(tracer).toBeUndefined()
    expect(warnings).toEqual([{ error: 'no exporter' }])
  })
})
