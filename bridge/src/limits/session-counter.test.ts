/** @module Tests for concurrent-session quotas: the replica-local and the cluster-wide counter. */
import { parseCatalog } from '@ferry/shared'
import { describe, expect, it } from 'vitest'
import type { QuotaExceeded } from './quota.ts'
import {
  type ClusterSession,
  ClusterSessionCounter,
  LocalSessionCounter,
  SessionCountUnavailable,
  type SessionLimits,
  type SessionRequest,
  type SessionSlot,
  sessionLimitsOf,
} from './session-counter.ts'

const NO_LIMITS: SessionLimits = {
  maxSessions: 0,
  maxSessionsPerPrincipal: 0,
  maxSessionsPerServer: 0,
}

let serial = 0
const req = (server = 'gh', principal = 'alice'): SessionRequest => ({
  session: `ferry-${++serial}`,
  server,
  principal,
})

const refused = (result: SessionSlot | QuotaExceeded): QuotaExceeded => {
  if (result.ok) throw new Error('expected a refusal')
  return result
}

describe('sessionLimitsOf', () => {
  it('reads bridge limits and per-server overrides', () => {
    const catalog = parseCatalog(`
bridge: { limits: { maxSessions: 50, maxSessionsPerPrincipal: 5, maxSessionsPerServer: 10 } }
servers:
  gh: { runtime: local, command: x, limits: { maxSessions: 2 } }
  fs: { runtime: local, command: x }
`)
    expect(sessionLimitsOf(catalog)).toEqual({
      maxSessions: 50,
      maxSessionsPerPrincipal: 5,
      maxSessionsPerServer: 10,
      servers: { gh: 2 },
    })
  })
})

describe('LocalSessionCounter', () => {
  it('maxSessionsPerPrincipal: accepts the limit, refuses limit + 1, per principal', async () => {
    const counter = new LocalSessionCounter({ ...NO_LIMITS, maxSessionsPerPrincipal: 2 })
    expect((await counter.acquire(req('gh', 'alice'))).ok).toBe(true)
    expect((await counter.acquire(req('fs', 'alice'))).ok).toBe(true)
    expect(refused(await counter.acquire(req('gh', 'alice')))).toEqual({
      ok: false,
      limit: 'maxSessionsPerPrincipal',
      setting: 'bridge.limits.maxSessionsPerPrincipal',
      value: 2,
      retryAfterSeconds: 5,
      message:
        'Too many sessions for this principal: at most 2 at once (bridge.limits.maxSessionsPerPrincipal)',
    })
    expect((await counter.acquire(req('gh', 'bob'))).ok).toBe(true)
  })

  it('maxSessionsPerServer: bridge default and per-server override', async () => {
    const counter = new LocalSessionCounter({
      ...NO_LIMITS,
      maxSessionsPerServer: 2,
      servers: { tiny: 1 },
    })
    expect((await counter.acquire(req('tiny', 'a'))).ok).toBe(true)
    expect(refused(await counter.acquire(req('tiny', 'b')))).toMatchObject({
      limit: 'maxSessionsPerServer',
      setting: 'servers.tiny.limits.maxSessions',
      value: 1,
      message:
        'Too many sessions of server "tiny": at most 1 at once (servers.tiny.limits.maxSessions)',
    })
    expect((await counter.acquire(req('gh', 'a'))).ok).toBe(true)
    expect((await counter.acquire(req('gh', 'b'))).ok).toBe(true)
    expect(refused(await counter.acquire(req('gh', 'c')))).toMatchObject({
      limit: 'maxSessionsPerServer',
      setting: 'bridge.limits.maxSessionsPerServer',
      value: 2,
    })
  })

  it('maxSessions: accepts the limit, refuses limit + 1, across servers and principals', async () => {
    const counter = new LocalSessionCounter({ ...NO_LIMITS, maxSessions: 3 })
    for (const [server, principal] of [
      ['a', 'x'],
      ['b', 'y'],
      ['c', 'z'],
    ] as const) {
      expect((await counter.acquire(req(server, principal))).ok).toBe(true)
    }
    expect(refused(await counter.acquire(req('d', 'w'))).limit).toBe('maxSessions')
    expect(counter.counts().total).toBe(3)
  })

  it('names the principal limit first, then the server, then the global one', async () => {
    const counter = new LocalSessionCounter({
      maxSessions: 1,
      maxSessionsPerPrincipal: 1,
      maxSessionsPerServer: 1,
    })
    await counter.acquire(req('gh', 'alice'))
    expect(refused(await counter.acquire(req('gh', 'alice'))).limit).toBe('maxSessionsPerPrincipal')
    expect(refused(await counter.acquire(req('gh', 'bob'))).limit).toBe('maxSessionsPerServer')
    expect(refused(await counter.acquire(req('fs', 'bob'))).limit).toBe('maxSessions')
  })

  it('frees a place on release, once', async () => {
    const counter = new LocalSessionCounter({ ...NO_LIMITS, maxSessions: 1 })
    const slot = (await counter.acquire(req())) as SessionSlot
    expect((await counter.acquire(req())).ok).toBe(false)
    slot.release()
    slot.release()
    const next = (await counter.acquire(req())) as SessionSlot
    expect(next.ok).toBe(true)
    expect((await counter.acquire(req())).ok).toBe(false)
    expect(counter.counts()).toEqual({
      total: 1,
      byServer: new Map([['gh', 1]]),
      byPrincipal: new Map([['alice', 1]]),
    })
    next.release()
    expect(counter.counts().byServer.size).toBe(0)
  })

  it('is unlimited with every limit at 0', async () => {
    const counter = new LocalSessionCounter(NO_LIMITS)
    for (let i = 0; i < 1000; i++) expect((await counter.acquire(req())).ok).toBe(true)
  })

  it('never exceeds a limit under many simultaneous acquisitions', async () => {
    const counter = new LocalSessionCounter({
      maxSessions: 25,
      maxSessionsPerPrincipal: 10,
      maxSessionsPerServer: 0,
    })
    const principals = ['a', 'b', 'c', 'd']
    const results = await Promise.all(
      Array.from({ length: 400 }, (_, i) => counter.acquire(req('gh', principals[i % 4])))
    )
    expect(results.filter((r) => r.ok)).toHaveLength(25)
    const counts = counter.counts()
    expect(counts.total).toBe(25)
    for (const p of principals) expect(counts.byPrincipal.get(p)).toBeLessThanOrEqual(10)
  })
})

/** A cluster of session Jobs that counters list, with a simulated API latency. */
const fakeCluster = (latencyMs = 2) => {
  const jobs = new Map<string, ClusterSession>()
  let lists = 0
  let failing = false
  return {
    jobs,
    get lists() {
      return lists
    },
    fail(value: boolean) {
      failing = value
    },
    list: async (): Promise<ClusterSession[]> => {
      lists++
      const snapshot = [...jobs.values()]
      await new Promise((resolve) => setTimeout(resolve, latencyMs))
      if (failing) throw new Error('the API server is unreachable')
      return snapshot
    },
  }
}

const manualClock = () => {
  let now = 1_000_000
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

describe('ClusterSessionCounter', () => {
  it('counts listed sessions and its own uncounted admissions', async () => {
    const cluster = fakeCluster()
    cluster.jobs.set('other-1', { session: 'other-1', server: 'gh', principal: 'alice' })
    const counter = new ClusterSessionCounter({
      limits: { ...NO_LIMITS, maxSessionsPerPrincipal: 2 },
      list: cluster.list,
      refreshInterval: 5000,
      maxUncounted: 10,
    })
    expect((await counter.acquire(req('gh', 'alice'))).ok).toBe(true)
    expect(counter.uncounted).toBe(1)
    const third = refused(await counter.acquire(req('fs', 'alice')))
    expect(third).toMatchObject({
      limit: 'maxSessionsPerPrincipal',
      value: 2,
      retryAfterSeconds: 5,
    })
    expect(counter.counts().byPrincipal.get('alice')).toBe(2)
    expect(cluster.lists).toBe(1)
  })

  it('stops counting an admission separately once a listing shows it', async () => {
    const time = manualClock()
    const cluster = fakeCluster()
    const counter = new ClusterSessionCounter({
      limits: { ...NO_LIMITS, maxSessions: 2 },
      list: cluster.list,
      refreshInterval: 5000,
      maxUncounted: 10,
      now: time.now,
    })
    const request = req()
    expect((await counter.acquire(request)).ok).toBe(true)
    cluster.jobs.set(request.session, {
      session: request.session,
      server: 'gh',
      principal: 'alice',
    })
    time.advance(5000)
    expect((await counter.acquire(req())).ok).toBe(true) // relists: 1 listed + 1 uncounted
    expect(counter.uncounted).toBe(1)
    expect(counter.counts().total).toBe(2)
    expect(refused(await counter.acquire(req())).limit).toBe('maxSessions')
    // The listed session ends; the next listing frees its place.
    cluster.jobs.delete(request.session)
    time.advance(5000)
    expect((await counter.acquire(req())).ok).toBe(true)
  })

  it('relists only when the count is stale, sharing one listing between callers', async () => {
    const time = manualClock()
    const cluster = fakeCluster(5)
    const counter = new ClusterSessionCounter({
      limits: NO_LIMITS,
      list: cluster.list,
      refreshInterval: 5000,
      maxUncounted: 1000,
      now: time.now,
    })
    await Promise.all(Array.from({ length: 50 }, () => counter.acquire(req())))
    expect(cluster.lists).toBe(1)
    time.advance(4999)
    await counter.acquire(req())
    expect(cluster.lists).toBe(1)
    time.advance(1)
    await counter.acquire(req())
    expect(cluster.lists).toBe(2)
  })

  it('relists at maxUncounted and refuses while that many are still unlisted', async () => {
    const cluster = fakeCluster()
    const counter = new ClusterSessionCounter({
      limits: NO_LIMITS,
      list: cluster.list,
      refreshInterval: 60_000,
      maxUncounted: 3,
    })
    for (let i = 0; i < 3; i++) expect((await counter.acquire(req())).ok).toBe(true)
    expect(cluster.lists).toBe(1)
    const result = refused(await counter.acquire(req()))
    expect(cluster.lists).toBe(2) // it tried to catch up first
    expect(result).toMatchObject({
      limit: 'sessionCount.maxUncounted',
      setting: 'bridge.limits.sessionCount.maxUncounted',
      value: 3,
      retryAfterSeconds: 60,
    })
  })

  it('frees an unlisted admission on release (a failed start)', async () => {
    const cluster = fakeCluster()
    const counter = new ClusterSessionCounter({
      limits: { ...NO_LIMITS, maxSessions: 1 },
      list: cluster.list,
      refreshInterval: 60_000,
      maxUncounted: 5,
    })
    const slot = (await counter.acquire(req())) as SessionSlot
    expect((await counter.acquire(req())).ok).toBe(false)
    slot.release()
    expect((await counter.acquire(req())).ok).toBe(true)
  })

  it('forgets admissions that listings never show', async () => {
    const time = manualClock()
    const cluster = fakeCluster()
    const counter = new ClusterSessionCounter({
      limits: { ...NO_LIMITS, maxSessions: 1 },
      list: cluster.list,
      refreshInterval: 1000,
      maxUncounted: 5,
      uncountedTtl: 10_000,
      now: time.now,
    })
    expect((await counter.acquire(req())).ok).toBe(true) // never becomes a Job
    time.advance(5000)
    expect((await counter.acquire(req())).ok).toBe(false)
    time.advance(10_001)
    expect((await counter.acquire(req())).ok).toBe(true)
  })

  it('throws SessionCountUnavailable when it has never listed the cluster', async () => {
    const cluster = fakeCluster()
    cluster.fail(true)
    const counter = new ClusterSessionCounter({
      limits: NO_LIMITS,
      list: cluster.list,
      refreshInterval: 1000,
      maxUncounted: 5,
    })
    await expect(counter.acquire(req())).rejects.toBeInstanceOf(SessionCountUnavailable)
  })

  it('goes on with its last listing when listing fails, for at most maxUncounted sessions', async () => {
    const time = manualClock()
    const cluster = fakeCluster()
    const counter = new ClusterSessionCounter({
      limits: NO_LIMITS,
      list: cluster.list,
      refreshInterval: 1000,
      maxUncounted: 2,
      now: time.now,
    })
    await counter.refresh()
    cluster.fail(true)
    time.advance(5000)
    expect((await counter.acquire(req())).ok).toBe(true)
    expect((await counter.acquire(req())).ok).toBe(true)
    expect(refused(await counter.acquire(req())).limit).toBe('sessionCount.maxUncounted')
    cluster.fail(false)
    time.advance(5000)
    // The listing works again but shows neither admission: they stay counted until the TTL.
    expect(refused(await counter.acquire(req())).limit).toBe('sessionCount.maxUncounted')
  })

  it('never exceeds a limit on one replica under many simultaneous acquisitions', async () => {
    const cluster = fakeCluster(3)
    const counter = new ClusterSessionCounter({
      limits: { maxSessions: 30, maxSessionsPerPrincipal: 0, maxSessionsPerServer: 12 },
      list: cluster.list,
      refreshInterval: 5000,
      maxUncounted: 1000,
    })
    const servers = ['a', 'b', 'c']
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => counter.acquire(req(servers[i % 3], `p${i}`)))
    )
    expect(results.filter((r) => r.ok)).toHaveLength(30)
    const counts = counter.counts()
    for (const s of servers) expect(counts.byServer.get(s)).toBeLessThanOrEqual(12)
  })

  it('bounds the overshoot of concurrent replicas by (replicas − 1) × maxUncounted', async () => {
    const LIMIT = 20
    const REPLICAS = 4
    const MAX_UNCOUNTED = 3
    const cluster = fakeCluster(2)
    const replicas = Array.from(
      { length: REPLICAS },
      () =>
        new ClusterSessionCounter({
          limits: { ...NO_LIMITS, maxSessions: LIMIT },
          list: cluster.list,
          refreshInterval: 10,
          maxUncounted: MAX_UNCOUNTED,
        })
    )
    // Each admitted session becomes a Job a little later, as the Kubernetes runtime would.
    const start = async (counter: ClusterSessionCounter, i: number) => {
      const request = req('gh', `p${i % 7}`)
      const result = await counter.acquire(request)
      if (!result.ok) return false
      await new Promise((resolve) => setTimeout(resolve, 1 + (i % 3)))
      cluster.jobs.set(request.session, { session: request.session, server: 'gh' })
      return true
    }
    let peak = 0
    const deadline = Date.now() + 400
    let i = 0
    while (Date.now() < deadline) {
      await Promise.all(replicas.map((counter) => start(counter, i++)))
      peak = Math.max(peak, cluster.jobs.size)
      // Sessions end now and then, making room for more races.
      if (i % 12 === 0)
        for (const key of [...cluster.jobs.keys()].slice(0, 5)) cluster.jobs.delete(key)
    }
    expect(peak).toBeGreaterThanOrEqual(LIMIT)
    expect(peak).toBeLessThanOrEqual(LIMIT + (REPLICAS - 1) * MAX_UNCOUNTED)
  })
})
