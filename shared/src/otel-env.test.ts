import { describe, expect, it } from 'vitest'
import { otlpExportConfigured, otlpProtocol } from './otel-env.ts'

describe('otlpExportConfigured', () => {
  it('needs an endpoint for the signal or a general one', () => {
    expect(otlpExportConfigured({}, 'traces')).toBe(false)
    expect(otlpExportConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, 'traces')).toBe(
      true
    )
    const tracesOnly = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }
    expect(otlpExportConfigured(tracesOnly, 'traces')).toBe(true)
    expect(otlpExportConfigured(tracesOnly, 'metrics')).toBe(false)
  })

  it('is off when the SDK is disabled or the exporter is none', () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }
    expect(otlpExportConfigured({ ...endpoint, OTEL_SDK_DISABLED: 'TRUE' }, 'traces')).toBe(false)
    expect(otlpExportConfigured({ ...endpoint, OTEL_SDK_DISABLED: 'false' }, 'traces')).toBe(true)
    expect(otlpExportConfigured({ ...endpoint, OTEL_METRICS_EXPORTER: 'none' }, 'metrics')).toBe(
      false
    )
    expect(otlpExportConfigured({ ...endpoint, OTEL_METRICS_EXPORTER: 'none' }, 'traces')).toBe(
      true
    )
  })
})

describe('otlpProtocol', () => {
  it('prefers the per-signal variable and defaults to http/protobuf', () => {
    expect(otlpProtocol({}, 'traces')).toBe('http/protobuf')
    expect(otlpProtocol({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, 'metrics')).toBe('http/json')
    expect(
      otlpProtocol(
        { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' },
        'traces'
      )
    ).toBe('grpc')
  })
})
