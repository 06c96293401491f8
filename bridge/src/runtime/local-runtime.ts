/**
 * @module
 * The `local` runtime: sessions' sidecars run as child processes of the bridge on
 * 127.0.0.1, each session with its own server process. By default (`sidecar: shared`) one
 * sidecar host process relays every session, on one port, routing by session name; with
 * `sidecar: dedicated` each session gets a sidecar process of its own, on an ephemeral port
 * it reports back through a pipe. Either runs detached in its own process group, so it
 * outlives a bridge restart: a bridge started again with the same keyring keeps serving
 * its sessions.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { type LocalServerConfig, type LogLevel, sidecarVerifier } from '@ferry/shared'
import {
  type SidecarSettings,
  VERIFIER_ENV,
  sidecarBundlePath,
  sidecarSettingsArgs,
} from '@ferry/sidecar'
import { SidecarHostProcess } from './sidecar-host-process.ts'
import {
  type SessionRuntime,
  type Workload,
  type WorkloadRef,
  type WorkloadSpec,
  WorkloadStartError,
  abortReason,
  untilAborted,
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

/** How long a sidecar host may take to listen; it is started once, before its first session. */
const HOST_START_TIMEOUT_MS = 30_000
/** How long `stopAll()` waits for sidecars to stop their servers before killing them. */
const STOP_ALL_GRACE_MS = 5000
/** How long `stop()` waits for a session that was told to end before ending it. */
const STOP_WAIT_MS = 10_000

const exitText = (code: number | null, signal: NodeJS.Signals | null) =>
  signal ? `was killed by ${signal}` : `exited with code ${code}`

export class LocalRuntime implements SessionRuntime {
  readonly kind = 'local'
  private readonly options: LocalRuntimeOptions
  /** Running sessions, by name: the process relaying each (its own sidecar, or the host). */
  private readonly children = new Map<string, ChildProcess>()
  /** Waiters for sessions to end, by name. */
  private readonly endWaiters = new Map<string, Array<() => void>>()
  /** The host new sessions go to, once it was asked for. */
  private host: Promise<SidecarHostProcess> | undefined
  /** Every host still running, by its process: older ones serve sessions until they end. */
  private readonly hosts = new Map<ChildProcess, SidecarHostProcess>()

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
    const settings: SidecarSettings = {
      idleTimeoutMs: server.idleTimeout,
      stopGraceMs: server.stopGrace,
      maxLineBytes: server.maxLineBytes,
      maxPayload: this.options.maxPayload,
      heartbeatMs: this.options.heartbeatMs,
      eventLog: { ...server.eventLog, maxAgeMs: server.eventLog.maxAge },
      logLevel: this.options.logLevel ?? 'info',
    }
    const env = { ...(server.inheritEnv ? process.env : {}), ...server.env }
    const verifier = await sidecarVerifier(spec.secret)
    if (server.sidecar === 'dedicated') {
      return this.startDedicated(
        spec,
        server,
        settings,
        { ...env, [VERIFIER_ENV]: verifier },
        signal
      )
    }
    const host = await this.sharedHost(signal)
    await host.startSession(
      {
        sessionName: spec.sessionName,
        verifier,
        command: server.command,
        args: server.args,
        env,
        cwd: server.cwd,
        settings,
      },
      signal
    )
    this.children.set(spec.sessionName, host.child)
    return { address: host.address }
  }

  /** The running sidecar host, started on first use (and again if it exited). */
  private async sharedHost(signal: AbortSignal): Promise<SidecarHostProcess> {
    if (!this.host) {
      const starting = SidecarHostProcess.spawn({
        socket: hostSocketPath(),
        nodePath: this.options.nodePath ?? process.execPath,
        nodeFlags: this.options.nodeFlags ?? SIDECAR_NODE_FLAGS,
        sidecarPath: this.options.sidecarPath ?? sidecarBundlePath(),
        logLevel: this.options.logLevel ?? 'info',
        timeoutMs: HOST_START_TIMEOUT_MS,
      })
      this.host = starting
      starting.then(
        (host) => {
          this.hosts.set(host.child, host)
          host.onended = (name) => this.ended(name)
          host.onexit = () => {
            this.hosts.delete(host.child)
            if (this.host === starting) this.host = undefined
            for (const [name, child] of this.children) if (child === host.child) this.ended(name)
          }
        },
        () => {
          if (this.host === starting) this.host = undefined
        }
      )
    }
    const host = await untilAborted(this.host, signal)
    if (host.usable) return host
    // It is exiting: the next session gets a new one.
    if (this.host && (await this.host) === host) this.host = undefined
    return this.sharedHost(signal)
  }

  private async startDedicated(
    spec: WorkloadSpec,
    server: LocalServerConfig,
    settings: SidecarSettings,
    env: NodeJS.ProcessEnv,
    signal: AbortSignal
  ): Promise<Workload> {
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
      ...sidecarSettingsArgs(settings),
      ...(server.cwd ? ['--cwd', server.cwd] : []),
      '--',
      server.command,
      ...server.args,
    ]
    const child = spawn(this.options.nodePath ?? process.execPath, args, {
      env,
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    })
    try {
      const port = await this.waitForReady(child, signal)
      this.children.set(spec.sessionName, child)
      child.once('exit', () => this.ended(spec.sessionName))
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
      const onAbort = () => settle(abortReason(signal))
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
    // Sessions end through the sidecar (`bye`); this only makes sure a session of ours is
    // really gone. A sidecar started by another replica ends on its own.
    const { sessionName } = workload
    if (!this.children.has(sessionName)) return
    const ended = this.whenEnded(sessionName)
    const timer = setTimeout(() => this.kill(sessionName), STOP_WAIT_MS)
    await ended
    clearTimeout(timer)
  }

  /** Stops every session this runtime started, and its sidecar host (tests and explicit shutdowns only). */
  async stopAll(): Promise<void> {
    const dedicated = [...new Set(this.children.values())].filter((child) => !this.hosts.has(child))
    const hosts = [...this.hosts.values()]
    this.host = undefined
    await Promise.all([
      ...hosts.map((host) => host.shutdown(STOP_ALL_GRACE_MS)),
      ...dedicated.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve()
            const timer = setTimeout(() => killGroup(child, 'SIGKILL'), STOP_ALL_GRACE_MS)
            child.once('exit', () => {
              clearTimeout(timer)
              resolve()
            })
            killGroup(child, 'SIGTERM')
          })
      ),
    ])
  }

  async close(): Promise<void> {
    // Hosts keep serving their sessions, and exit after the last one.
    for (const host of this.hosts.values()) host.release()
    this.hosts.clear()
    this.host = undefined
    this.children.clear()
  }

  private ended(sessionName: string): void {
    this.children.delete(sessionName)
    for (const resolve of this.endWaiters.get(sessionName) ?? []) resolve()
    this.endWaiters.delete(sessionName)
  }

  private whenEnded(sessionName: string): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.endWaiters.get(sessionName) ?? []
      waiters.push(resolve)
      this.endWaiters.set(sessionName, waiters)
    })
  }

  /** Ends a session that did not end when told to. */
  private kill(sessionName: string): void {
    const child = this.children.get(sessionName)
    if (!child) return
    const host = this.hosts.get(child)
    if (host) host.stopSession(sessionName)
    else killGroup(child, 'SIGKILL')
  }
}

/** Longest Unix socket path that fits `sun_path` (108 bytes on Linux, with its terminator). */
const MAX_SOCKET_PATH = 100

/**
 * Where a new host listens: a Unix socket in a fresh directory only this user may enter, so
 * only processes of this user reach the sessions (on 127.0.0.1 any local user could dial),
 * and each message costs less than over loopback TCP. With a temporary directory too deep for
 * a socket path, the host listens on 127.0.0.1 instead.
 */
const hostSocketPath = (): string | undefined => {
  const path = join(mkdtempSync(join(tmpdir(), 'ferry-')), 'sidecars.sock')
  if (path.length <= MAX_SOCKET_PATH) return path
  rmdirSync(dirname(path))
  return undefined
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
