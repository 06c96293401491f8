import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler } from '@opentelemetry/sdk-trace'
import { describe, expect, it } from 'vitest'
import { samplerFromEnv } from './sampler.ts'

describe('samplerFromEnv', () => {
  it('reads OTEL_TRACES_SAMPLER and its argument', () => {
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'always_off' })).toBeInstanceOf(AlwaysOffSampler)
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'ALWAYS_ON' })).toBeInstanceOf(AlwaysOnSampler)
    expect(
      samplerFromEnv({
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }).toString()
    ).toMatch(/ParentBased\{root=TraceIdRatioBased\{0\.25\}/)
    expect(
      samplerFromEnv({
        OTEL_TRACES_SAMPLER: 'traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '7',
      }).toString()
    ).toBe('TraceIdRatioBased{1}')
  })

  it('defaults to parentbased_always_on', () => {
    for (const env of [{}, { OTEL_TRACES_SAMPLER: 'jaeger_remote' }]) {
      const sampler = samplerFromEnv(env)
      expect(sampler).toBeInstanceOf(ParentBasedSampler)
      expect(sampler.toString()).toMatch(/root=AlwaysOnSampler/)
    }
  })
})
