/**
 * @module
 * The sidecar as a library: what the local runtime and tests use to locate and
 * drive it. The process entry is `bin.ts`, bundled to `dist/sidecar.mjs`. The
 * OpenTelemetry session tracer is the `@ferry/sidecar/tracing` subpath, so that importing
 * this entry does not load the SDK.
 */
import { fileURLToPath } from 'node:url'

export { type SidecarOptions, type RunningSidecar, runSidecar } from './sidecar.ts'
export {
  type HostEvent,
  type HostRequest,
  type HostedSessionSpec,
  type RunningSidecarHost,
  type SidecarHostOptions,
  runSidecarHost,
} from './host.ts'
export {
  type SidecarHostArgs,
  type SidecarSettings,
  parseHostArgs,
  parseSidecarArgs,
  sidecarSettingsArgs,
  SESSION_ENV,
  VERIFIER_ENV,
  UsageError,
} from './cli.ts'
export { EventLog, type EventLogLimits, LoggedStream } from './session/event-log.ts'
export {
  type BridgePeer,
  type ServerPort,
  type SessionEnd,
  SidecarSession,
} from './session/sidecar-session.ts'
export type { MessageSpan, SessionTracer } from './telemetry/session-tracer.ts'

/** Absolute path of the bundled sidecar, `dist/sidecar.mjs`. */
export const sidecarBundlePath = (): string =>
  fileURLToPath(
    new URL(
      import.meta.url.endsWith('.ts') ? '../dist/sidecar.mjs' : './sidecar.mjs',
      import.meta.url
    )
  )
