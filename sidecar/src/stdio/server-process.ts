/**
 * @module
 * The MCP server child process behind a stdio transport: spawns it in its own process group,
 * frames its stdout into lines, forwards its stderr to the log (rate-limited), and tears down
 * the whole process tree when it is stopped or exits.
 */
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { NdjsonDecoder } from './ndjson.ts'

/** The logging surface this module needs; structurally satisfied by `@ferry/shared`'s Logger. */
export interface StdioLogger {
  warn(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  debug(obj: object, msg?: string): void
}

export interface StdioServerProcessOptions {
  command: string
  args: string[]
  /** The exact environment of the child; the caller has already removed secrets. */
  env: Record<string, string | undefined>
  cwd?: string
  /** Longest stdout line accepted, in bytes. */
  maxLineBytes: number
  /** Time between SIGTERM and SIGKILL to the process group. */
  stopGraceMs: number
  /** Forwarded stderr lines per second (default 100); the excess is counted and reported. */
  stderrLinesPerSecond?: number
  logger: StdioLogger
}

export interface ServerExit {
  code: number | null
  signal: NodeJS.Signals | null
  error?: string
}

const STDERR_MAX_LINE_BYTES = 16 * 1024
const DEFAULT_STDERR_LINES_PER_SECOND = 100
const RATE_WINDOW_MS = 1000

/** One MCP server child process, shaped like the MCP SDK's `Transport`. */
export class StdioServerProcess {
  onmessage?: (line: string) => void
  onoversize?: (bytes: number) => void
  ondrain?: () => void
  onexit?: (exit: ServerExit) => void

  readonly #options: StdioServerProcessOptions
  readonly #logger: StdioLogger
  readonly #stderrLimit: number
  #child: ChildProcessWithoutNullStreams | undefined
  #stopping = false
  #leaderExit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  #childError: string | undefined
  #exited: ServerExit | undefined
  #killTimer: NodeJS.Timeout | undefined
  #killSent = false
  #closeTimer: NodeJS.Timeout | undefined
  #outputPaused = false
  #resolveExit!: (exit: ServerExit) => void
  readonly #exitPromise: Promise<ServerExit>
  #stderrWindowStart = 0
  #stderrWindowCount = 0
  #stderrDropped = 0
  #stderrDropTimer: NodeJS.Timeout | undefined

  constructor(options: StdioServerProcessOptions) {
    this.#options = options
    this.#logger = options.logger
    this.#stderrLimit = options.stderrLinesPerSecond ?? DEFAULT_STDERR_LINES_PER_SECOND
    this.#exitPromise = new Promise((resolve) => (this.#resolveExit = resolve))
  }

  get pid(): number | undefined {
    return this.#child?.pid
  }

  get exited(): ServerExit | undefined {
    return this.#exited
  }

  start(): Promise<void> {
    if (this.#child || this.#exited)
      return Promise.reject(new Error('server process already started'))
    const { command, args, env, cwd } = this.#options
    const failure = (err: Error): Error => {
      const where = cwd === undefined ? '' : ` in ${cwd}`
      return new Error(`failed to start server command "${command}"${where}: ${err.message}`, {
        cause: err,
      })
    }
    let child: ChildProcessWithoutNullStreams
    try {
      // Detached puts the server in its own process group, so stop() can signal every
      // process it started, not just the leader.
      child = spawn(command, args, {
        env,
        cwd,
        detached: true,
        shell: false,
        stdio: ['pipe', 'pipe', 'pipe'],
      })
    } catch (err) {
      const error = failure(err as Error)
      this.#finish(error.message)
      return Promise.reject(error)
    }
    this.#child = child
    this.#wireOutput(child)
    child.stdin.on('drain', () => this.ondrain?.())
    // EPIPE after the server exits is expected; the exit itself is reported through onexit.
    child.stdin.on('error', (err) => this.#logger.debug({ err }, 'server stdin error'))

    return new Promise<void>((resolve, reject) => {
      let spawned = false
      child.once('spawn', () => {
        spawned = true
        this.#logger.info({ pid: child.pid, command }, 'server started')
        resolve()
      })
      child.on('error', (err) => {
        if (!spawned) {
          const error = failure(err)
          this.#finish(error.message)
          reject(error)
          return
        }
        this.#childError = err.message
        this.#logger.warn({ err, pid: child.pid }, 'server process error')
      })
      child.on('exit', (code, signal) => this.#onLeaderExit(code, signal))
      // 'close' follows 'exit' once every stdio pipe is closed, i.e. the whole tree holding
      // them is gone and the last stdout lines were delivered.
      child.on('close', () => this.#finish())
    })
  }

  send(line: string): boolean {
    const child = this.#child
    if (!child || this.#stopping || this.#leaderExit || this.#exited || !child.stdin.writable) {
      throw new Error('server process is not running')
    }
    return child.stdin.write(line)
  }

  /**
   * Idempotent. SIGTERM to the process group (and stdin EOF, which many stdio servers treat
   * as the signal to exit), SIGKILL after `stopGraceMs`; resolves once the tree is gone.
   */
  stop(reason?: string): Promise<ServerExit> {
    const child = this.#child
    if (!child) {
      this.#finish('stopped before start')
      return this.#exitPromise
    }
    if (this.#stopping || this.#exited) return this.#exitPromise
    this.#stopping = true
    this.#logger.info({ pid: child.pid, reason }, 'stopping server')
    child.stdin.end()
    if (this.#leaderExit) this.#armCloseTimer()
    else {
      this.#signalGroup('SIGTERM')
      this.#scheduleKill()
    }
    return this.#exitPromise
  }

  /**
   * Stops reading stdout, so a slow consumer pushes back on the server through the pipe.
   * Lines already read in the current chunk are still delivered.
   */
  pauseOutput(): void {
    this.#outputPaused = true
    if (!this.#stopping) {
      clearTimeout(this.#closeTimer)
      this.#closeTimer = undefined
    }
    this.#child?.stdout.pause()
  }

  resumeOutput(): void {
    this.#outputPaused = false
    this.#child?.stdout.resume()
    this.#armCloseTimer()
  }

  #wireOutput(child: ChildProcessWithoutNullStreams): void {
    const stdout = new NdjsonDecoder({
      maxLineBytes: this.#options.maxLineBytes,
      onLine: (line) => this.onmessage?.(line),
      onOversize: (bytes) => {
        this.#logger.warn(
          { bytes, maxLineBytes: this.#options.maxLineBytes },
          'server stdout line too long, skipped'
        )
        this.onoversize?.(bytes)
      },
    })
    child.stdout.on('data', (chunk: Buffer) => {
      // Output still flowing after SIGKILL is the tree's last words, not a stuck pipe.
      this.#closeTimer?.refresh()
      stdout.push(chunk)
    })
    child.stdout.on('end', () => stdout.end())
    child.stdout.on('error', (err) => this.#logger.debug({ err }, 'server stdout error'))

    const stderr = new NdjsonDecoder({
      maxLineBytes: STDERR_MAX_LINE_BYTES,
      onLine: (line) => this.#stderrLine(line),
      onOversize: () =>
        this.#stderrLine(`[stderr line over ${STDERR_MAX_LINE_BYTES} bytes dropped]`),
    })
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    child.stderr.on('end', () => stderr.end())
    child.stderr.on('error', (err) => this.#logger.debug({ err }, 'server stderr error'))
  }

  // Fixed one-second windows: a chatty server cannot flood the sidecar's log, and what was
  // dropped is still visible as one count per window.
  #stderrLine(line: string): void {
    const now = Date.now()
    if (now - this.#stderrWindowStart >= RATE_WINDOW_MS) {
      this.#stderrWindowStart = now
      this.#stderrWindowCount = 0
    }
    if (this.#stderrWindowCount < this.#stderrLimit) {
      this.#stderrWindowCount++
      this.#logger.info({ stream: 'stderr', line }, 'server stderr')
      return
    }
    this.#stderrDropped++
    this.#stderrDropTimer ??= setTimeout(
      () => this.#reportStderrDropped(),
      Math.max(0, RATE_WINDOW_MS - (now - this.#stderrWindowStart))
    )
  }

  #reportStderrDropped(): void {
    clearTimeout(this.#stderrDropTimer)
    this.#stderrDropTimer = undefined
    if (this.#stderrDropped === 0) return
    this.#logger.warn(
      { stream: 'stderr', dropped: this.#stderrDropped },
      'server stderr lines dropped (rate limit)'
    )
    this.#stderrDropped = 0
  }

  #onLeaderExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.#leaderExit = { code, signal }
    this.#logger.info({ pid: this.#child?.pid, code, signal }, 'server exited')
    // Whatever the server left behind in its group belongs to a dead session: terminate it
    // too (stop() already sent SIGTERM to the whole group). An empty group answers ESRCH.
    if (!this.#stopping) this.#signalGroup('SIGTERM')
    this.#scheduleKill()
  }

  #scheduleKill(): void {
    if (this.#killTimer) return
    this.#killTimer = setTimeout(() => {
      this.#signalGroup('SIGKILL')
      this.#killSent = true
      this.#armCloseTimer()
    }, this.#options.stopGraceMs)
  }

  // A process that escaped the group (setsid) may hold the pipes open forever, so 'close'
  // is awaited only until stdout has yielded nothing for a grace period. A paused consumer
  // must not lose the lines of a server that exited by itself, but stop() must stay bounded.
  #armCloseTimer(): void {
    if (!this.#killSent || this.#exited || (this.#outputPaused && !this.#stopping)) return
    clearTimeout(this.#closeTimer)
    this.#closeTimer = setTimeout(() => this.#forceClose(), this.#options.stopGraceMs)
  }

  #forceClose(): void {
    const child = this.#child
    if (!child || this.#exited) return
    if (!this.#leaderExit) {
      // The leader survived SIGKILL (uninterruptible sleep); keep waiting for its exit.
      this.#closeTimer = setTimeout(() => this.#forceClose(), this.#options.stopGraceMs)
      return
    }
    this.#logger.warn({ pid: child.pid }, 'server stdio still open after SIGKILL, closing it')
    child.stdin.destroy()
    child.stdout.destroy()
    child.stderr.destroy()
    this.#finish()
  }

  #signalGroup(signal: NodeJS.Signals): void {
    const pid = this.#child?.pid
    if (pid === undefined) return
    try {
      process.kill(-pid, signal)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return
      this.#logger.warn({ err, pid, signal }, 'signalling server process group failed')
      this.#child?.kill(signal)
    }
  }

  #finish(error?: string): void {
    if (this.#exited) return
    clearTimeout(this.#killTimer)
    clearTimeout(this.#closeTimer)
    this.#reportStderrDropped()
    const message = error ?? this.#childError
    const exit: ServerExit = {
      code: this.#leaderExit?.code ?? null,
      signal: this.#leaderExit?.signal ?? null,
      ...(message === undefined ? {} : { error: message }),
    }
    this.#exited = exit
    this.#resolveExit(exit)
    // A process that never spawned never exited: start() rejects instead.
    if (this.#leaderExit) this.onexit?.(exit)
  }
}
