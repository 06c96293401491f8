/**
 * @module
 * The bridge's handle on a shared sidecar host (`ferry-sidecar host`, see the sidecar's
 * `host.ts`): spawns it detached with a Node IPC channel, asks it for sessions and learns
 * when they end. The host outlives the bridge: when the bridge goes, the channel closes and
 * the host keeps serving its sessions until the last one ends.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync, rmdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { LogLevel } from '@ferry/shared'
import type { HostEvent, HostRequest, HostedSessionSpec } from '@ferry/sidecar'
import { WorkloadStartError, abortReason } from './runtime.ts'

export interface SidecarHostSpawnOptions {
  nodePath: string
  nodeFlags: string[]
  sidecarPath: string
  /** A Unix socket for the host to listen on, in a directory only this user can enter; 127.0.0.1 and any free port without one. */
  socket?: string
  logLevel: LogLevel
  /** How long the host may take to listen. */
  timeoutMs: number
}

const removeSocket = (socket: string) => {
  try {
    rmSync(socket, { force: true })
    rmdirSync(dirname(socket))
  } catch {
    // Gone already, or not empty: not ours to remove.
  }
}

interface PendingStart {
  resolve(): void
  reject(error: WorkloadStartError): void
}

export class SidecarHostProcess {
  readonly child: ChildProcess
  /** Where bridges dial its sessions: `ws+unix://<socket>` or `ws://127.0.0.1:<port>`. */
  readonly address: string
  /** A session the host ran ended (or never will run: it failed or the host exited). */
  onended?: (sessionName: string) => void
  /** The host process exited; every session it ran is over. */
  onexit?: () => void
  private readonly pending = new Map<number, PendingStart>()
  /** Waiters for the end of a session being stopped. */
  private readonly ending = new Map<string, () => void>()
  private nextId = 1

  private constructor(child: ChildProcess, address: string) {
    this.child = child
    this.address = address
    child.on('message', (event: HostEvent) => this.receive(event))
    child.once('exit', (code, signal) => {
      const why = signal ? `was killed by ${signal}` : `exited with code ${code}`
      for (const start of this.pending.values()) {
        start.reject(new WorkloadStartError('exited', `the sidecar host ${why}`))
      }
      this.pending.clear()
      for (const ended of this.ending.values()) ended()
      this.ending.clear()
      this.onexit?.()
    })
  }

  /** Spawns a host and resolves once it listens; rejects with {@link WorkloadStartError}. */
  static spawn(options: SidecarHostSpawnOptions): Promise<SidecarHostProcess> {
    const child = spawn(
      options.nodePath,
      [
        ...options.nodeFlags,
        options.sidecarPath,
        'host',
        ...(options.socket ? ['--socket', options.socket] : ['--host', '127.0.0.1', '--port', '0']),
        '--log-level',
        options.logLevel,
      ],
      // Detached, in its own process group, so it survives the bridge's restart.
      { detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }
    )
    // A host removes its socket and directory on its way out; one that was killed cannot.
    if (options.socket) child.once('exit', () => removeSocket(options.socket!))
    return new Promise((resolve, reject) => {
      const fail = (error: WorkloadStartError) => {
        clearTimeout(timer)
        child.off('message', onMessage)
        child.off('exit', onExit)
        child.off('error', onError)
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
        if (options.socket) removeSocket(options.socket)
        reject(error)
      }
      const onMessage = (event: HostEvent) => {
        if (event.t !== 'listening') return
        clearTimeout(timer)
        child.off('message', onMessage)
        child.off('exit', onExit)
        child.off('error', onError)
        // Neither the process nor its channel may keep the bridge's event loop alive.
        child.unref()
        child.channel?.unref()
        resolve(
          new SidecarHostProcess(
            child,
            event.socket ? `ws+unix://${event.socket}` : `ws://127.0.0.1:${event.port}`
          )
        )
      }
      const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
        fail(
          new WorkloadStartError(
            'exited',
            `the sidecar host ${signal ? `was killed by ${signal}` : `exited with code ${code}`} before it listened`
          )
        )
      const onError = (error: Error) =>
        fail(new WorkloadStartError('spawn', `cannot start the sidecar host: ${error.message}`))
      const timer = setTimeout(
        () => fail(new WorkloadStartError('timeout', 'the sidecar host did not start in time')),
        options.timeoutMs
      )
      child.on('message', onMessage)
      child.once('exit', onExit)
      child.once('error', onError)
    })
  }

  /** Whether the host process still runs and takes requests. */
  get usable(): boolean {
    return this.child.connected && this.child.exitCode === null && this.child.signalCode === null
  }

  /**
   * Starts a session in the host; resolves once it serves it. When `signal` aborts first, the
   * session is stopped, and the rejection waits until it has ended: nothing of a failed start
   * may outlive the answer.
   */
  startSession(spec: HostedSessionSpec, signal: AbortSignal): Promise<void> {
    const id = this.nextId++
    const started = new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      if (!this.request({ t: 'start', id, spec })) {
        this.pending.delete(id)
        reject(new WorkloadStartError('exited', 'the sidecar host is gone'))
      }
    })
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const reason = abortReason(signal)
        // The host may be starting it still: whatever it ends up with is stopped first.
        void started
          .then(
            () => this.stopSessionAndWait(spec.sessionName),
            () => undefined
          )
          .then(() => reject(reason))
      }
      if (signal.aborted) return onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      started.then(
        () => {
          signal.removeEventListener('abort', onAbort)
          resolve()
        },
        (error: WorkloadStartError) => {
          signal.removeEventListener('abort', onAbort)
          reject(error)
        }
      )
    })
  }

  /** Ends a session now (SIGTERM, then SIGKILL after its grace). */
  stopSession(sessionName: string): void {
    this.request({ t: 'stop', sessionName })
  }

  private stopSessionAndWait(sessionName: string): Promise<void> {
    if (!this.usable) return Promise.resolve()
    const ended = new Promise<void>((resolve) => this.ending.set(sessionName, resolve))
    this.stopSession(sessionName)
    return ended
  }

  /** Ends every session and waits for the host to exit (SIGKILL after `graceMs`). */
  async shutdown(graceMs: number): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    if (!this.request({ t: 'shutdown' })) this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }

  /** No more requests: the host exits once its sessions end. */
  release(): void {
    if (this.child.connected) this.child.disconnect()
  }

  private request(request: HostRequest): boolean {
    if (!this.child.connected) return false
    this.child.send(request)
    return true
  }

  private receive(event: HostEvent): void {
    switch (event.t) {
      case 'started':
        this.pending.get(event.id)?.resolve()
        this.pending.delete(event.id)
        return
      case 'failed':
        this.pending
          .get(event.id)
          ?.reject(
            new WorkloadStartError('spawn', `the session's server could not start: ${event.error}`)
          )
        this.pending.delete(event.id)
        return
      case 'ended':
        this.ending.get(event.sessionName)?.()
        this.ending.delete(event.sessionName)
        this.onended?.(event.sessionName)
        return
      case 'listening':
        return
    }
  }
}
