/**
 * @module
 * At most one pooled connection per live session on this replica. Concurrent
 * requests for a session share one dial; connections unused for a while are
 * closed; sessions known to be over are remembered for a while so they answer 404
 * without another dial.
 */
import {
  type DialOptions,
  type SessionExit,
  DialError,
  SidecarConnection,
} from './sidecar-connection.ts'

export interface ConnectionPoolOptions {
  dialTimeoutMs: number
  idleCloseMs: number
  maxPayload: number
  heartbeatMs: number
  /** How many ended session names to remember. */
  tombstones?: number
  /** Opens a connection; injectable for tests. */
  dial?: (options: DialOptions) => Promise<SidecarConnection>
  /** Events a sidecar evicted from its session's log (for metrics). */
  onevicted?: (count: number) => void
  /**
   * A session ended, as its sidecar reports to exactly one bridge connection: that
   * replica counts it and has its workload removed.
   */
  onsessionend?: (exit: SessionExit & { ageMs: number }, target: SessionTarget) => void
}

export interface SessionTarget {
  sessionName: string
  address: string
  /** The session's workload, for the runtime to remove once the session is over. */
  workload?: { runtime: string; ref?: Record<string, string> }
  /** The per-session secret; asked for only when a dial is needed. */
  secret: () => Promise<string>
}

export class ConnectionPool {
  private readonly options: ConnectionPoolOptions
  private readonly connections = new Map<string, Promise<SidecarConnection>>()
  private readonly ended = new Set<string>()
  private readonly maxTombstones: number
  private readonly sweeper: NodeJS.Timeout
  private readonly dial: (options: DialOptions) => Promise<SidecarConnection>

  /** A pooled connection closed; `ended` when the sidecar said the session is over. */
  onclose?: (sessionName: string, ended: boolean) => void

  constructor(options: ConnectionPoolOptions) {
    this.options = options
    this.maxTombstones = options.tombstones ?? 10_000
    this.dial = options.dial ?? SidecarConnection.dial
    this.sweeper = setInterval(
      () => this.sweep(),
      Math.max(100, Math.min(options.idleCloseMs / 2, 10_000))
    )
    this.sweeper.unref()
  }

  get size(): number {
    return this.connections.size
  }

  /** Whether this replica knows the session is over. */
  isEnded(sessionName: string): boolean {
    return this.ended.has(sessionName)
  }

  markEnded(sessionName: string): void {
    if (this.ended.has(sessionName)) return
    this.ended.add(sessionName)
    if (this.ended.size > this.maxTombstones) {
      this.ended.delete(this.ended.values().next().value!)
    }
  }

  /** The session's connection, dialling when there is none; rejects with {@link DialError}. */
  get(target: SessionTarget): Promise<SidecarConnection> {
    if (this.ended.has(target.sessionName)) {
      return Promise.reject(new DialError('the session has ended', true))
    }
    const pooled = this.connections.get(target.sessionName)
    if (pooled) {
      // A connection that dropped on its own is replaced; its close handler may not have run yet.
      return pooled.then((c) => {
        if (c.ended) throw new DialError('the session has ended', true)
        return c.isOpen ? c : this.replace(target, pooled)
      })
    }
    const connection = this.connect(target)
    this.connections.set(target.sessionName, connection)
    return connection
  }

  private replace(
    target: SessionTarget,
    stale: Promise<SidecarConnection>
  ): Promise<SidecarConnection> {
    if (this.connections.get(target.sessionName) === stale)
      this.connections.delete(target.sessionName)
    return this.get(target)
  }

  private async connect(target: SessionTarget): Promise<SidecarConnection> {
    let connection: SidecarConnection
    try {
      connection = await this.dial({
        address: target.address,
        sessionName: target.sessionName,
        secret: await target.secret(),
        timeoutMs: this.options.dialTimeoutMs,
        maxPayload: this.options.maxPayload,
        heartbeatMs: this.options.heartbeatMs,
      })
    } catch (error) {
      this.connections.delete(target.sessionName)
      if (error instanceof DialError && error.gone) this.markEnded(target.sessionName)
      throw error
    }
    connection.onevicted = this.options.onevicted
    connection.onexit = (exit) => {
      if (exit.ageMs !== undefined) {
        this.options.onsessionend?.(exit as SessionExit & { ageMs: number }, target)
      }
      this.markEnded(target.sessionName)
      if (this.connections.get(target.sessionName) === pending) {
        this.connections.delete(target.sessionName)
      }
    }
    connection.onclose = (exit) => {
      if (this.connections.get(target.sessionName) === pending) {
        this.connections.delete(target.sessionName)
      }
      if (exit) this.markEnded(target.sessionName)
      this.onclose?.(target.sessionName, exit !== undefined)
    }
    const pending = this.connections.get(target.sessionName)
    return connection
  }

  private sweep(): void {
    const now = Date.now()
    for (const [sessionName, pending] of this.connections) {
      void pending.then(
        (connection) => {
          if (connection.idleFor(now) < this.options.idleCloseMs) return
          // Out of the pool first, so no request is handed a closing connection.
          if (this.connections.get(sessionName) === pending) this.connections.delete(sessionName)
          connection.close()
        },
        () => undefined
      )
    }
  }

  /** Closes every pooled connection (bridge shutdown); sessions are untouched. */
  async close(): Promise<void> {
    clearInterval(this.sweeper)
    const all = [...this.connections.values()]
    this.connections.clear()
    await Promise.all(
      all.map((p) =>
        p.then(
          (c) => c.close(),
          () => undefined
        )
      )
    )
  }
}
