/**
 * @module
 * The runtime interface: how a session's workload (the sidecar and the MCP
 * server behind it) is started and stopped. One implementation per kind of place
 * a workload can run — a local child process, a Kubernetes Job — chosen per server
 * in the catalog. The runtime is only on the session's start and end paths, never
 * on the per-message path.
 */
import type { ServerConfig } from '@ferry/shared'

export interface WorkloadSpec {
  /** The session's name: unique, RFC 1123 label, also the workload's name. */
  sessionName: string
  /** The catalog name of the server. */
  serverName: string
  server: ServerConfig
  /** The per-session secret the sidecar must demand from bridges. */
  secret: string
  /**
   * The starting principal's quota key (`principalKey()`), for runtimes that record it so a
   * cluster-wide count can group sessions by principal (the Job's `ferry.dev/principal` label).
   * Undefined for sessions exempt from per-principal limits.
   */
  principal?: string
}

/** A started workload: where its sidecar listens, and what the runtime needs to stop it. */
export interface Workload {
  /** WebSocket URL of the sidecar, e.g. `ws://127.0.0.1:41234`. */
  address: string
  /** Runtime-specific reference, sealed into the session id (e.g. namespace and Job name). */
  ref?: Record<string, string>
}

/** What a session id tells a runtime about the workload to stop. */
export interface WorkloadRef {
  sessionName: string
  ref?: Record<string, string>
}

/** Why a workload did not start; the text reaches the client in the `initialize` error. */
export type WorkloadFailure =
  | 'timeout'
  | 'spawn'
  | 'exited'
  | 'image_pull'
  | 'unschedulable'
  | 'oom'
  | 'config'
  | 'api'
  | 'capacity'

export class WorkloadStartError extends Error {
  readonly failure: WorkloadFailure
  constructor(failure: WorkloadFailure, message: string) {
    super(message)
    this.name = 'WorkloadStartError'
    this.failure = failure
  }
}

/** Why an aborted start stopped: the start timeout's own error, or a plain abort. */
export const abortReason = (
  signal: AbortSignal,
  message = 'the session start was aborted'
): WorkloadStartError =>
  signal.reason instanceof WorkloadStartError
    ? signal.reason
    : new WorkloadStartError('timeout', message)

/**
 * Settles with `pending`, or rejects with the abort reason (`message` for a plain abort) as
 * soon as `signal` aborts, so nothing a start waits on can hold it past its deadline.
 * `abandoned` gets what was given up on (a call that may still succeed and leave something to
 * remove).
 */
export const untilAborted = <T>(
  pending: Promise<T>,
  signal: AbortSignal,
  message?: string,
  abandoned?: (pending: Promise<T>) => void
): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      abandoned?.(pending)
      reject(abortReason(signal, message))
    }
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    pending.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error as Error)
      }
    )
  })

export interface SessionRuntime {
  readonly kind: string
  /**
   * Starts a workload and resolves once its sidecar accepts connections. Rejects
   * with {@link WorkloadStartError}; the runtime cleans up what it created. `signal`
   * aborts the start (the start timeout, or the client went away).
   */
  start(spec: WorkloadSpec, signal: AbortSignal): Promise<Workload>
  /** Removes the workload after its session ended. Idempotent; never throws for a gone workload. */
  stop(workload: WorkloadRef): Promise<void>
  /** Workloads this runtime started that are still running, if it can tell. */
  activeSessions(): number
  /** Releases the runtime's own resources; running sessions are left alone. */
  close(): Promise<void>
}
