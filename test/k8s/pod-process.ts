/**
 * @module test/k8s/pod-process
 *
 * A container's main process, run as a real local process in its own process group (like a
 * container's PID namespace): stdout and stderr go into a bounded log buffer for `pods/log`,
 * stopping is SIGTERM then SIGKILL after the grace period, and when the main process exits the
 * rest of its group is killed, as a container runtime would.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { constants } from 'node:os'

export interface ProcessExit {
  /** Exit status, or 128 + signal number when killed by a signal (what runtimes report). */
  exitCode: number
  signal: NodeJS.Signals | null
  finishedAt: Date
}

export interface SpawnSpec {
  command: string[]
  env: Record<string, string>
  cwd: string
  logLimitBytes: number
}

export class PodProcess {
  readonly pid: number
  readonly startedAt = new Date()
  readonly exited: Promise<ProcessExit>
  private readonly child: ChildProcess
  private log = ''
  private readonly logLimit: number
  private done = false

  private constructor(child: ChildProcess, logLimitBytes: number) {
    this.child = child
    this.pid = child.pid!
    this.logLimit = logLimitBytes
    const append = (chunk: Buffer) => {
      this.log += chunk.toString('utf8')
      if (this.log.length > this.logLimit)
        this.log = this.log.slice(this.log.length - this.logLimit)
    }
    child.stdout?.on('data', append)
    child.stderr?.on('data', append)
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.done = true
        // PID 1 of a container exiting takes the whole container with it.
        this.signalGroup('SIGKILL')
        const number = signal ? (constants.signals[signal] ?? 9) : 0
        resolve({ exitCode: signal ? 128 + number : (code ?? 0), signal, finishedAt: new Date() })
      })
    })
  }

  /** Starts the process; rejects (with the runtime-style message) if it cannot be started. */
  static start(spec: SpawnSpec): Promise<PodProcess> {
    const [file, ...args] = spec.command
    if (!file) return Promise.reject(new Error('no command specified'))
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, {
        cwd: spec.cwd,
        env: spec.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      child.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          new Error(
            `failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "${file}": ${error.code === 'ENOENT' ? 'executable file not found in $PATH' : error.message}: unknown`
          )
        )
      })
      child.once('spawn', () => resolve(new PodProcess(child, spec.logLimitBytes)))
    })
  }

  get running(): boolean {
    return !this.done
  }

  logs(): string {
    return this.log
  }

  /** Signals the whole process group (ESRCH once it is gone is fine). */
  signalGroup(signal: NodeJS.Signals) {
    try {
      process.kill(-this.pid, signal)
    } catch {
      // Group already gone.
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the main process has exited. */
  async stop(graceMs: number): Promise<ProcessExit> {
    if (this.done) return this.exited
    this.signalGroup('SIGTERM')
    const timer = setTimeout(() => this.signalGroup('SIGKILL'), Math.max(0, graceMs))
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }
}
