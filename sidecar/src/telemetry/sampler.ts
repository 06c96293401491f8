/**
 * @module
 * The sampler named by `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, as the OpenTelemetry
 * specification defines them. SDK 3.x moved reading them into NodeSDK, which the sidecar does
 * not use.
 */
import {
  type Sampler,
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace'

const ratio = (arg: string | undefined): number => {
  const value = arg === undefined ? NaN : Number(arg)
  return Number.isFinite(value) && value >= 0 && value <= 1 ? value : 1
}

/** The configured sampler; `parentbased_always_on` (the default) for unknown values. */
export const samplerFromEnv = (env: Record<string, string | undefined>): Sampler => {
  const arg = env.OTEL_TRACES_SAMPLER_ARG
  switch (env.OTEL_TRACES_SAMPLER?.trim().toLowerCase()) {
    case 'always_on':
      return new AlwaysOnSampler()
    case 'always_off':
      return new AlwaysOffSampler()
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio(arg))
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio(arg)) })
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
  }
}
