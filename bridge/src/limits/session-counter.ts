/**
 * @module
 * Concurrent-session quotas: `bridge.limits.maxSessions` (all sessions),
 * `maxSessionsPerPrincipal` and `maxSessionsPerServer` (or a server's own
 * `limits.maxSessions`). A session is counted from {@link SessionCounter.acquire}, before its
 * workload starts, so a burst of starts cannot slip past a limit.
 *
 * ## Consistency model
 *
 * **{@link LocalSessionCounter}** (the local runtime; one replica): exact. Counts live in
 * memory; an acquisition checks and reserves synchronously, so any number of simultaneous
 * acquisitions never exceed a limit. A slot counts until `release()` — call it when the start
 * fails or the session ends. Counts start at zero when the bridge restarts, although local
 * sidecars outlive the bridge; `bridge.maxSessions` (checked against the runtime's own count)
 * still applies.
 *
 * **{@link ClusterSessionCounter}** (Kubernetes; many replicas, no shared state): the count is
 * what a listing of the session Jobs (their `ferry.dev/session`, `ferry.dev/server` and
 * `ferry.dev/principal` labels) showed, plus the sessions this replica admitted that no
 * listing has shown yet ("uncounted"). A replica lists again before admitting when its listing
 * is older than `refreshInterval`, or when it holds `maxUncounted` uncounted sessions.
 * Concurrent listings are shared (one request in flight), and the check-and-reserve after it is
 * synchronous, so one replica alone never exceeds a limit. Replicas do not see each other's
 * uncounted sessions, so together they can overshoot a limit by at most
 * **(replicas − 1) × maxUncounted** sessions; the overshoot disappears at the next listing, and
 * no further session is admitted until the count is back under the limit. A stale listing can
 * also still show sessions that ended, which only errs on the side of refusing.
 * If the Jobs cannot be listed, a replica keeps its last listing and admits at most
 * `maxUncounted` more sessions on it; with no listing at all, `acquire` throws
 * {@link SessionCountUnavailable} (answer 503).
 */
import type { Catalog } from '@ferry/shared'
import { type QuotaExceeded, quotaExceeded } from './quota.ts'

/** The concurrent-session limits; `0` means no limit. */
export interface SessionLimits {
  maxSessions: number
  maxSessionsPerPrincipal: number
  /** Default per-server limit. */
  maxSessionsPerServer: number
  /** Servers with their own `limits.maxSessions`. */
  servers?: Readonly<Record<string, number>>
}

/** The session limits of a catalog. */
export function sessionLimitsOf(catalog: Pick<Catalog, 'bridge' | 'servers'>): SessionLimits {
  const { maxSessions, maxSessionsPerPrincipal, maxSessionsPerServer } = catalog.bridge.limits
  const servers: Record<string, number> = {}
  for (const [name, server] of Object.entries(catalog.servers)) {
    if (server.limits?.maxSessions !== undefined) servers[name] = server.limits.maxSessions
  }
  return { maxSessions, maxSessionsPerPrincipal, maxSessionsPerServer, servers }
}

/** A session about to start. */
export interface SessionRequest {
  /** The session name (unique; the Job's name on Kubernetes). */
  session: string
  /** Catalog server name. */
  server: string
  /**
   * The principal's quota key (`principalKey()`), also the Job's `ferry.dev/principal` label.
   * Undefined for a session not subject to per-principal limits (the anonymous principal of an
   * unauthenticated endpoint, which stands for everyone): it counts towards every other limit.
   */
  principal?: string
}

/** A reserved place for one session. */
export interface SessionSlot {
  readonly ok: true
  /** Gives the place back: when the start failed, or (local counter) when the session ended. Idempotent. */
  release(): void
}

/** Sessions counted now. */
export interface SessionCounts {
  total: number
  byServer: ReadonlyMap<string, number>
  byPrincipal: ReadonlyMap<string, number>
}

export interface SessionCounter {
  /** Reserves a place for a session, or refuses with the first limit it would exceed. */
  acquire(request: SessionRequest): Promise<SessionSlot | QuotaExceeded>
  /** What is counted now. */
  counts(): SessionCounts
}

/** The cluster could not be counted and there is no earlier count to go on. */
export class SessionCountUnavailable extends Error {
  constructor(cause: unknown) {
    super('cannot count the running sessions: listing the session Jobs failed', { cause })
    this.name = 'SessionCountUnavailable'
  }
}

class Tally {
  total = 0
  readonly byServer = new Map<string, number>()
  readonly byPrincipal = new Map<string, number>()

  add(server: string | undefined, principal: string | undefined, delta: number): void {
    this.total += delta
    if (server !== undefined) bump(this.byServer, server, delta)
    if (principal !== undefined) bump(this.byPrincipal, principal, delta)
  }

  snapshot(): SessionCounts {
    return {
      total: this.total,
      byServer: new Map(this.byServer),
      byPrincipal: new Map(this.byPrincipal),
    }
  }
}

const bump = (map: Map<string, number>, key: string, delta: number): void => {
  const next = (map.get(key) ?? 0) + delta
  if (next > 0) map.set(key, next)
  else map.delete(key)
}

/** The first limit `request` would exceed given `counts`, or `undefined`. */
const firstExceeded = (
  limits: SessionLimits,
  counts: { total: number; server: number; principal: number },
  request: SessionRequest,
  retryAfterSeconds: number
): QuotaExceeded | undefined => {
  if (
    request.principal !== undefined &&
    limits.maxSessionsPerPrincipal > 0 &&
    counts.principal >= limits.maxSessionsPerPrincipal
  ) {
    return quotaExceeded(
      'maxSessionsPerPrincipal',
      limits.maxSessionsPerPrincipal,
      retryAfterSeconds,
      `Too many sessions for this principal: at most ${limits.maxSessionsPerPrincipal} at once (bridge.limits.maxSessionsPerPrincipal)`
    )
  }
  const own = limits.servers?.[request.server]
  const serverLimit = own ?? limits.maxSessionsPerServer
  if (serverLimit > 0 && counts.server >= serverLimit) {
    const setting =
      own === undefined
        ? 'bridge.limits.maxSessionsPerServer'
        : `servers.${request.server}.limits.maxSessions`
    return quotaExceeded(
      'maxSessionsPerServer',
      serverLimit,
      retryAfterSeconds,
      `Too many sessions of server "${request.server}": at most ${serverLimit} at once (${setting})`,
      setting
    )
  }
  if (limits.maxSessions > 0 && counts.total >= limits.maxSessions) {
    return quotaExceeded(
      'maxSessions',
      limits.maxSessions,
      retryAfterSeconds,
      `Too many sessions: at most ${limits.maxSessions} at once (bridge.limits.maxSessions)`
    )
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Replica-local

export interface LocalSessionCounterOptions {
  /** `Retry-After` of a refusal, in seconds (a guess: nobody knows when a session ends). Default `5`. */
  retryAfterSeconds?: number
}

/** Exact in-memory counts for one replica (the local runtime). See the module comment. */
export class LocalSessionCounter implements SessionCounter {
  readonly #limits: SessionLimits
  readonly #retryAfter: number
  readonly #tally = new Tally()

  constructor(limits: SessionLimits, options: LocalSessionCounterOptions = {}) {
    this.#limits = limits
    this.#retryAfter = options.retryAfterSeconds ?? 5
  }

  async acquire(request: SessionRequest): Promise<SessionSlot | QuotaExceeded> {
    return this.tryAcquire(request)
  }

  /** {@link acquire} without the promise. */
  tryAcquire(request: SessionRequest): SessionSlot | QuotaExceeded {
    const tally = this.#tally
    const refused = firstExceeded(
      this.#limits,
      {
        total: tally.total,
        server: tally.byServer.get(request.server) ?? 0,
        principal:
          request.principal === undefined ? 0 : (tally.byPrincipal.get(request.principal) ?? 0),
      },
      request,
      this.#retryAfter
    )
    if (refused) return refused
    tally.add(request.server, request.principal, 1)
    let released = false
    return {
      ok: true,
      release: () => {
        if (released) return
        released = true
        tally.add(request.server, request.principal, -1)
      },
    }
  }

  counts(): SessionCounts {
    return this.#tally.snapshot()
  }
}

// ---------------------------------------------------------------------------------------------
// Cluster-wide

/** One running session as a listing shows it (from the Job's labels). */
export interface ClusterSession {
  session: string
  server?: string
  principal?: string
}

export interface ClusterSessionCounterOptions {
  limits: SessionLimits
  /**
   * Lists the running sessions of every replica, e.g. the Jobs labelled `ferry.dev/session` in
   * the sessions namespaces that have not finished. Should honour `signal`.
   */
  list: (signal: AbortSignal) => Promise<Iterable<ClusterSession>>
  /** `bridge.limits.sessionCount.refreshInterval`, in milliseconds. */
  refreshInterval: number
  /** `bridge.limits.sessionCount.maxUncounted`. */
  maxUncounted: number
  /**
   * An uncounted session that listings started this long after its admission still do not show
   * is forgotten (its start failed without `release()`, or it ended before any listing). Default `60s`.
   */
  uncountedTtl?: number
  /** Give up a listing after this long, in milliseconds. Default `5000`. */
  listTimeout?: number
  /** After a failed listing, wait this long before trying again. Default `1000`. */
  retryFailedAfter?: number
  /** Current time in milliseconds. Default `Date.now`. */
  now?: () => number
}

interface Uncounted {
  server: string
  principal: string | undefined
  since: number
}

interface Listing {
  at: number
  sessions: Set<string>
  tally: Tally
}

/** Counts from periodic listings of the cluster plus this replica's own recent admissions. See the module comment. */
export class ClusterSessionCounter implements SessionCounter {
  readonly #options: ClusterSessionCounterOptions
  readonly #now: () => number
  readonly #uncounted = new Map<string, Uncounted>()
  #listing: Listing | undefined
  #refreshing: Promise<void> | undefined
  #failedAt = -Infinity
  #lastError: unknown

  constructor(options: ClusterSessionCounterOptions) {
    if (!(options.maxUncounted >= 1)) throw new RangeError('maxUncounted must be at least 1')
    this.#options = options
    this.#now = options.now ?? Date.now
  }

  /** Lists the cluster now (shared with any listing already in flight). Rejects if it fails. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#list().finally(() => {
      this.#refreshing = undefined
    })
    return this.#refreshing
  }

  async #list(): Promise<void> {
    const startedAt = this.#now()
    let sessions: Iterable<ClusterSession>
    try {
      sessions = await this.#options.list(AbortSignal.timeout(this.#options.listTimeout ?? 5000))
    } catch (error) {
      this.#failedAt = this.#now()
      this.#lastError = error
      throw error
    }
    const names = new Set<string>()
    const tally = new Tally()
    for (const { session, server, principal } of sessions) {
      if (names.has(session)) continue
      names.add(session)
      tally.add(server, principal, 1)
    }
    const ttl = this.#options.uncountedTtl ?? 60_000
    for (const [name, entry] of this.#uncounted) {
      // Listed: now part of the listing. Unlisted long after admission: not running.
      if (names.has(name) || entry.since < startedAt - ttl) this.#uncounted.delete(name)
    }
    this.#listing = { at: startedAt, sessions: names, tally }
  }

  #needsListing(): boolean {
    const listing = this.#listing
    if (!listing) return true
    const stale = this.#now() - listing.at >= this.#options.refreshInterval
    return stale || this.#uncounted.size >= this.#options.maxUncounted
  }

  async acquire(request: SessionRequest): Promise<SessionSlot | QuotaExceeded> {
    const retryFailedAfter = this.#options.retryFailedAfter ?? 1000
    if (this.#needsListing() && this.#now() - this.#failedAt >= retryFailedAfter) {
      await this.refresh().catch(() => undefined)
    }
    // From here to the reservation nothing awaits, so concurrent acquisitions see each other.
    const listing = this.#listing
    if (!listing) throw new SessionCountUnavailable(this.#lastError)
    const retryAfter = this.#options.refreshInterval / 1000
    if (this.#uncounted.size >= this.#options.maxUncounted) {
      return quotaExceeded(
        'sessionCount.maxUncounted',
        this.#options.maxUncounted,
        retryAfter,
        `Too many sessions starting on this bridge replica at once: at most ${this.#options.maxUncounted} before the cluster count catches up (bridge.limits.sessionCount.maxUncounted)`
      )
    }
    const counts = this.#countsFor(listing, request)
    const refused = firstExceeded(this.#options.limits, counts, request, retryAfter)
    if (refused) return refused
    this.#uncounted.set(request.session, {
      server: request.server,
      principal: request.principal,
      since: this.#now(),
    })
    return {
      ok: true,
      release: () => {
        // Once a listing shows the session, the next listing without it frees the place.
        this.#uncounted.delete(request.session)
      },
    }
  }

  #countsFor(listing: Listing, request: SessionRequest) {
    let total = listing.tally.total
    let server = listing.tally.byServer.get(request.server) ?? 0
    let principal =
      request.principal === undefined ? 0 : (listing.tally.byPrincipal.get(request.principal) ?? 0)
    for (const [name, entry] of this.#uncounted) {
      if (listing.sessions.has(name)) continue
      total++
      if (entry.server === request.server) server++
      if (request.principal !== undefined && entry.principal === request.principal) principal++
    }
    return { total, server, principal }
  }

  counts(): SessionCounts {
    const tally = new Tally()
    const listing = this.#listing
    if (listing) {
      tally.total = listing.tally.total
      for (const [k, v] of listing.tally.byServer) tally.byServer.set(k, v)
      for (const [k, v] of listing.tally.byPrincipal) tally.byPrincipal.set(k, v)
    }
    for (const [name, entry] of this.#uncounted) {
      if (!listing?.sessions.has(name)) tally.add(entry.server, entry.principal, 1)
    }
    return tally.snapshot()
  }

  /** Sessions this replica admitted that no listing has shown yet. */
  get uncounted(): number {
    return this.#uncounted.size
  }
}
