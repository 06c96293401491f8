/** @module Tests for token buckets and the per-principal session rate limiter. */
import { describe, expect, it } from 'vitest'
import { RateLimiter, TokenBucket } from './token-bucket.ts'

const clock = (start = 1_000_000) => {
  let now = start
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

describe('TokenBucket', () => {
  it('allows exactly the burst at once, and refuses the next with the exact wait', () => {
    const time = clock()
    const bucket = new TokenBucket({ capacity: 5, refillPerSecond: 2, now: time.now })
    for (let i = 0; i < 5; i++) expect(bucket.take()).toEqual({ ok: true })
    expect(bucket.take()).toEqual({ ok: false, retryAfterMs: 500 })
    expect(bucket.tokens).toBe(0)
  })

  it('refills at the configured rate, up to the capacity', () => {
    const time = clock()
    const bucket = new TokenBucket({ capacity: 3, refillPerSecond: 1, now: time.now })
    for (let i = 0; i < 3; i++) bucket.take()
    time.advance(999)
    expect(bucket.take()).toEqual({ ok: false, retryAfterMs: 1 })
    time.advance(1)
    expect(bucket.take()).toEqual({ ok: true })
    expect(bucket.take().ok).toBe(false)
    time.advance(60_000)
    expect(bucket.tokens).toBe(3)
    expect(bucket.full).toBe(true)
    for (let i = 0; i < 3; i++) expect(bucket.take().ok).toBe(true)
    expect(bucket.take().ok).toBe(false)
  })

  it('keeps fractional tokens between refills', () => {
    const time = clock()
    const bucket = new TokenBucket({ capacity: 1, refillPerSecond: 0.25, now: time.now })
    bucket.take()
    time.advance(2000)
    expect(bucket.take()).toEqual({ ok: false, retryAfterMs: 2000 })
    time.advance(2000)
    expect(bucket.take().ok).toBe(true)
  })

  it('does not drain or refill when the clock goes backwards', () => {
    const time = clock()
    const bucket = new TokenBucket({ capacity: 2, refillPerSecond: 1, now: time.now })
    bucket.take()
    time.advance(-10_000)
    expect(bucket.tokens).toBe(1)
    expect(bucket.take().ok).toBe(true)
    expect(bucket.take().ok).toBe(false)
  })

  it('takes several tokens at once or none', () => {
    const time = clock()
    const bucket = new TokenBucket({ capacity: 4, refillPerSecond: 1, now: time.now })
    expect(bucket.take(3).ok).toBe(true)
    expect(bucket.take(2)).toEqual({ ok: false, retryAfterMs: 1000 })
    expect(bucket.tokens).toBe(1)
    expect(() => bucket.take(5)).toThrow(RangeError)
  })

  it('rejects impossible settings', () => {
    expect(() => new TokenBucket({ capacity: 0, refillPerSecond: 1 })).toThrow(RangeError)
    expect(() => new TokenBucket({ capacity: 1, refillPerSecond: 0 })).toThrow(RangeError)
    expect(() => new TokenBucket({ capacity: 1, refillPerSecond: Number.NaN })).toThrow(RangeError)
  })
})

describe('RateLimiter (bridge.limits.sessionRate)', () => {
  it('limits each key separately and names the limit when refusing', () => {
    const time = clock()
    const limiter = new RateLimiter({ perMinute: 6, burst: 2, now: time.now })
    expect(limiter.take('alice')).toEqual({ ok: true })
    expect(limiter.take('alice')).toEqual({ ok: true })
    expect(limiter.take('alice')).toEqual({
      ok: false,
      limit: 'sessionRate',
      setting: 'bridge.limits.sessionRate',
      value: 6,
      retryAfterSeconds: 10,
      message:
        'Too many new sessions: at most 2 at once and 6 per minute per principal (bridge.limits.sessionRate)',
    })
    expect(limiter.take('bob')).toEqual({ ok: true })
    time.advance(10_000)
    expect(limiter.take('alice')).toEqual({ ok: true })
    expect(limiter.take('alice').ok).toBe(false)
  })

  it('is off with perMinute 0', () => {
    const limiter = new RateLimiter({ perMinute: 0, burst: 1 })
    for (let i = 0; i < 1000; i++) expect(limiter.take('x').ok).toBe(true)
    expect(limiter.size).toBe(0)
  })

  it('remembers a bounded number of keys, forgetting full buckets first', () => {
    const time = clock()
    const limiter = new RateLimiter({ perMinute: 60, burst: 1, maxKeys: 3, now: time.now })
    limiter.take('a')
    limiter.take('b')
    time.advance(1000) // a and b are full again
    limiter.take('c')
    limiter.take('d') // evicts the full a and b
    expect(limiter.size).toBe(2)
    expect(limiter.take('c').ok).toBe(false) // c was kept and is still empty
    for (let i = 0; i < 100; i++) limiter.take(`k${i}`)
    expect(limiter.size).toBeLessThanOrEqual(3)
  })

  it('never admits more than the burst to a flood of simultaneous starts', async () => {
    const limiter = new RateLimiter({ perMinute: 30, burst: 7 })
    const results = await Promise.all(
      Array.from({ length: 200 }, async () => limiter.take('mallory'))
    )
    expect(results.filter((r) => r.ok)).toHaveLength(7)
  })
})
