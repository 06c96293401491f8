/**
 * @module
 * The `local` runtime: each session's sidecar is a child process of the bridge,
 * listening on 127.0.0.1 on an ephemeral port it reports back through a pipe. The
 * sidecar runs detached in its own process group, so it outlives a bridge restart:
 * a bridge started again with the same keyring keeps serving its sessions.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { type LocalServerConfig, type LogLevel, sidecarVerifier } from '@ferry/shared'
import { VERIFIER_ENV, sidecarBundlePath, sidecarSettingsArgs } from '@ferry/sidecar'
import {
  type SessionRuntime,
  type Workload,
  type WorkloadRef,
  type WorkloadSpec,
  WorkloadStartError,
} from './runtime.ts'

export interface LocalRuntimeOptions {
  /** The bundled sidecar; defaults to the one built in `sidecar/dist`. */
  sidecarPath?: string
  /** Node binary running the sidecar; defaults to this process's. */
  nodePath?: string
  /** Node flags for sidecars; defaults to {@link SIDECAR_NODE_FLAGS}. */
  nodeFlags?: string[]
  /** Log level passed to sidecars. */
  logLevel?: LogLevel
  /** Bridge → sidecar WebSocket ping interval in ms. */
  heartbeatMs: number
  /** Largest frame a sidecar accepts. */
  maxPayload: number
}

/**
 * A sidecar is a small, mostly idle relay: a 1 MiB young generation instead of
 * V8's 16 MiB trims its footprint without slowing its start. (`--single-threaded`
 * would save ~6 MB more but adds ~30 ms of start-up; measured in `npm run bench`.)
 */
export const SIDECAR_NODE_FLAGS = ['--max-semi-space-size=1']

const exitText = (code: number | null, signal: NodeJS.Signals | null) =>
  signal ? `was killed by ${signal}` : `exited with code ${code}`

export class LocalRuntime implements SessionRuntime {
  readonly kind = 'local'
  private readonly options: LocalRuntimeOptions
  private readonly children = new Map<string, ChildProcess>()

  constructor(options: LocalRuntimeOptions) {
    this.options = options
  }

  /** Whether the sidecar of `sessionName` still runs (so its session may still be in use). */
  isRunning(sessionName: string): boolean {
    return this.children.has(sessionName)
  }

  activeSessions(): number {
    return this.children.size
  }

  async start(spec: WorkloadSpec, signal: AbortSignal): Promise<Workload> {
    const server = spec.server as LocalServerConfig
    const args = [
      ...(this.options.nodeFlags ?? SIDECAR_NODE_FLAGS),
      this.options.sidecarPath ?? sidecarBundlePath(),
      '--session',
      spec.sessionName,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--ready-fd',
      '3',
      ...sidecarSettingsArgs({
        idleTimeoutMs: server.idleTimeout,
        stopGraceMs: server.stopGrace,
        maxLineBytes: server.maxLineBytes,
        maxPayload: this.options.maxPayload,
        heartbeatMs: this.options.heartbeatMs,
        eventLog: { ...server.eventLog, maxAgeMs: server.eventLog.maxAge },
        logLevel: this.options.logLevel ?? 'info',
      }),
      ...(server.cwd ? ['--cwd', server.cwd] : []),
      '--',
      server.command,
      ...server.args,
    ]
    const env = {
      ...(server.inheritEnv ? process.env : {}),
      ...server.env,
      [VERIFIER_ENV]: await sidecarVerifier(spec.secret),
    }
    const child = spawn(this.options.nodePath ?? process.execPath, args, {
      env,
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    })
    try {
      const port = await this.waitForReady(child, signal)
      this.children.set(spec.sessionName, child)
      child.once('exit', () => this.children.delete(spec.sessionName))
      child.unref()
      return { address: `ws://127.0.0.1:${port}` }
    } catch (error) {
      // Nothing of a failed start may outlive the answer.
      const exited =
        child.exitCode !== null || child.signalCode !== null
          ? Promise.resolve()
          : new Promise<void>((resolve) => child.once('exit', () => resolve()))
      killGroup(child, 'SIGKILL')
      await exited
      throw error
    }
  }

  private waitForReady(child: ChildProcess, signal: AbortSignal): Promise<number> {
    const ready = child.stdio[3] as Readable
    return new Promise<number>((resolve, reject) => {
      const lines = createInterface({ input: ready })
      let settled = false
      const settle = (error?: WorkloadStartError, port?: number) => {
        if (settled) return
        settled = true
        lines.off('close', onClose)
        lines.close()
        ready.destroy()
        child.off('error', onError)
        signal.removeEventListener('abort', onAbort)
        if (error) reject(error)
        else resolve(port!)
      }
      // The pipe closes when the sidecar exits, after any line it wrote on the way out,
      // so a reason it gave is read before its exit is reported.
      const onClose = () => {
        const exited = () =>
          settle(
            new WorkloadStartError(
              'exited',
              `the session's sidecar ${exitText(child.exitCode, child.signalCode)} before it was ready`
            )
          )
        if (child.exitCode !== null || child.signalCode !== null) exited()
        else child.once('exit', exited)
      }
      const onError = (error: Error) =>
        settle(new WorkloadStartError('spawn', `cannot start the sidecar: ${error.message}`))
      const onAbort = () =>
        settle(
          signal.reason instanceof WorkloadStartError
            ? signal.reason
            : new WorkloadStartError('timeout', 'the session start was aborted')
        )
      lines.once('line', (line) => {
        let report: { port?: unknown; error?: unknown } = {}
        try {
          report = JSON.parse(line) as typeof report
        } catch {
          // reported below
        }
        if (typeof report.port === 'number') return settle(undefined, report.port)
        settle(
          new WorkloadStartError(
            'spawn',
            typeof report.error === 'string'
              ? `the session's server could not start: ${report.error}`
              : 'the sidecar reported no port'
          )
        )
      })
      lines.once('close', onClose)
      child.once('error', onError)
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  async stop(workload: WorkloadRef): Promise<void> {
    // Sessions end through the sidecar (`bye`); this only makes sure a child of
    // ours is really gone. A sidecar started by another replica ends on its own.
    const child = this.children.get(workload.sessionName)
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }

  /** Stops every session this runtime started (tests and explicit shutdowns only). */
  async stopAll(): Promise<void> {
    const all = [...this.children.values()]
    await Promise.all(
      all.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve()
            const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 5000)
            child.once('exit', () => {
              clearTimeout(timer)
              resolve()
            })
            killGroup(child, 'SIGTERM')
          })
      )
    )
  }

  async close(): Promise<void> {
    this.children.clear()
  }
}

const killGroup = (child: ChildProcess, signal: NodeJS.Signals) => {
  // Once the sidecar is reaped its pid may be reused; it kills its own server on exit.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}
