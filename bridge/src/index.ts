/**
 * @module
 * The bridge as a library: assemble and serve it, or use its parts.
 */
export { type AppOptions, createApp } from './app.ts'
export {
  type Bridge,
  type BridgeOptions,
  type RunningBridge,
  createBridge,
  serveBridge,
} from './bridge.ts'
export { FerryHTTPError } from './errors.ts'
export { ConnectionPool, type SessionTarget } from './relay/connection-pool.ts'
export { type ChannelListener, DialError, SidecarConnection } from './relay/sidecar-connection.ts'
export {
  KubernetesRuntime,
  type KubernetesRuntimeOptions,
} from './runtime/kubernetes/kubernetes-runtime.ts'
export { buildSessionJob, mergePatch } from './runtime/kubernetes/session-job.ts'
export { LocalRuntime, type LocalRuntimeOptions } from './runtime/local-runtime.ts'
export {
  type SessionRuntime,
  type Workload,
  type WorkloadRef,
  type WorkloadSpec,
  WorkloadStartError,
} from './runtime/runtime.ts'
export { Keyring, KeyringError, addKeyToFile, loadKeyringFile } from './session/keyring.ts'
export { type SessionClaims, SessionTokenCodec, newSessionName } from './session/token.ts'
export { StreamableHTTPHandler, SESSION_HEADER } from './transport/streamable-http.ts'
export { BridgeMetrics, type BridgeMetricsOptions } from './telemetry/metrics.ts'
export { Instrumentation, Operation } from './telemetry/operations.ts'
export { type Telemetry, startTelemetry } from './telemetry/sdk.ts'
export { SUPPORTED_PROTOCOL_VERSIONS } from './transport/request-checks.ts'
export * from './auth/index.ts'
export * from './limits/index.ts'
