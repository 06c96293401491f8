/** @module Tests for per-session in-flight and stream limits. */
import { describe, expect, it } from 'vitest'
import { InFlightLimiter, type Permit } from './in-flight.ts'

describe('InFlightLimiter', () => {
  it('accepts exactly the limit and refuses one more, naming the limit', () => {
    const limiter = new InFlightLimiter({ limit: 3, name: 'maxInFlightPerSession' })
    for (let i = 0; i < 3; i++) expect(limiter.acquire('s1').ok).toBe(true)
    expect(limiter.acquire('s1')).toEqual({
      ok: false,
      limit: 'maxInFlightPerSession',
      setting: 'bridge.limits.maxInFlightPerSession',
      value: 3,
      retryAfterSeconds: 1,
      message:
        'Too many requests in flight in this session: at most 3 (bridge.limits.maxInFlightPerSession)',
    })
    expect(limiter.count('s1')).toBe(3)
  })

  it('frees a slot on release, once, and forgets idle sessions', () => {
    const limiter = new InFlightLimiter({ limit: 1, name: 'maxStreamsPerSession' })
    const permit = limiter.acquire('s1') as Permit
    expect(limiter.acquire('s1').ok).toBe(false)
    permit.release()
    permit.release() // a second release must not free someone else's slot
    expect(limiter.size).toBe(0)
    const again = limiter.acquire('s1') as Permit
    expect(again.ok).toBe(true)
    permit.release()
    expect(limiter.acquire('s1').ok).toBe(false)
    again.release()
    expect(limiter.count('s1')).toBe(0)
  })

  it('keeps sessions apart', () => {
    const limiter = new InFlightLimiter({ limit: 1, name: 'maxInFlightPerSession' })
    expect(limiter.acquire('a').ok).toBe(true)
    expect(limiter.acquire('b').ok).toBe(true)
    expect(limiter.acquire('a').ok).toBe(false)
  })

  it('is off with limit 0 but still counts', () => {
    const limiter = new InFlightLimiter({ limit: 0, name: 'maxStreamsPerSession' })
    const permits = Array.from({ length: 500 }, () => limiter.acquire('s') as Permit)
    expect(permits.every((p) => p.ok)).toBe(true)
    expect(limiter.count('s')).toBe(500)
    for (const p of permits) p.release()
    expect(limiter.size).toBe(0)
  })

  it('never lets simultaneous requests exceed the limit', async () => {
    const limiter = new InFlightLimiter({ limit: 8, name: 'maxInFlightPerSession' })
    let running = 0
    let peak = 0
    let refused = 0
    const request = async (i: number) => {
      const permit = limiter.acquire('session')
      if (!permit.ok) {
        refused++
        return
      }
      running++
      peak = Math.max(peak, running)
      await new Promise((resolve) => setTimeout(resolve, i % 5))
      running--
      permit.release()
    }
    await Promise.all(Array.from({ length: 300 }, (_, i) => request(i)))
    expect(peak).toBe(8)
    expect(refused).toBeGreaterThan(0)
    expect(limiter.count('session')).toBe(0)
  })
})
