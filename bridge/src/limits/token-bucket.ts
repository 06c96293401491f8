/**
 * @module
 * Token buckets: a {@link TokenBucket} allows `capacity` actions at once and regains
 * `refillPerSecond` of them each second. {@link RateLimiter} keeps one bucket per key (per
 * principal for `bridge.limits.sessionRate`), in memory, per replica.
 */
import { type QuotaExceeded, quotaExceeded } from './quota.ts'

export interface TokenBucketOptions {
  /** Most tokens held: the burst. At least 1. */
  capacity: number
  /** Tokens regained per second. */
  refillPerSecond: number
  /** Current time in milliseconds (monotonic is best). Default `performance.now()`. */
  now?: () => number
}

/** The outcome of {@link TokenBucket.take}. */
export type TakeResult = { ok: true } | { ok: false; retryAfterMs: number }

const defaultNow = () => performance.now()
const EPSILON = 1e-6

export class TokenBucket {
  readonly capacity: number
  readonly refillPerSecond: number
  readonly #now: () => number
  #tokens: number
  #updated: number

  constructor(options: TokenBucketOptions) {
    if (!(options.capacity >= 1)) throw new RangeError('capacity must be at least 1')
    if (!(options.refillPerSecond > 0)) throw new RangeError('refillPerSecond must be positive')
    this.capacity = options.capacity
    this.refillPerSecond = options.refillPerSecond
    this.#now = options.now ?? defaultNow
    this.#tokens = options.capacity
    this.#updated = this.#now()
  }

  #refill(): void {
    const now = this.#now()
    // A clock that went backwards refills nothing rather than draining the bucket.
    const elapsed = Math.max(0, now - this.#updated)
    this.#tokens = Math.min(this.capacity, this.#tokens + (elapsed / 1000) * this.refillPerSecond)
    this.#updated = now
  }

  /** Tokens available now (fractional). */
  get tokens(): number {
    this.#refill()
    return this.#tokens
  }

  /** Whether the bucket is full, i.e. indistinguishable from a new one. */
  get full(): boolean {
    return this.tokens >= this.capacity
  }

  /**
   * Takes `count` tokens if there are that many; otherwise takes none and says how long until
   * there will be.
   */
  take(count = 1): TakeResult {
    if (count > this.capacity) throw new RangeError('cannot take more tokens than the capacity')
    this.#refill()
    // Refills add up fractions of a token; forgive float rounding below a millionth.
    if (this.#tokens >= count - EPSILON) {
      this.#tokens = Math.max(0, this.#tokens - count)
      return { ok: true }
    }
    const missing = count - this.#tokens
    return {
      ok: false,
      retryAfterMs: Math.max(1, Math.ceil((missing / this.refillPerSecond) * 1000 - EPSILON)),
    }
  }
}

export interface RateLimiterOptions {
  /** Actions regained per minute; `0` turns the limiter off. */
  perMinute: number
  /** Actions allowed at once. */
  burst: number
  /** The limit's name in refusals. Default `sessionRate`. */
  limit?: 'sessionRate'
  /** Most keys remembered; full buckets are forgotten first, then the least recently used. Default 10,000. */
  maxKeys?: number
  now?: () => number
}

/** One token bucket per key. */
export class RateLimiter {
  readonly #options: RateLimiterOptions
  readonly #maxKeys: number
  // A Map iterates in insertion order; re-inserting on use makes it an LRU.
  readonly #buckets = new Map<string, TokenBucket>()

  constructor(options: RateLimiterOptions) {
    if (!(options.perMinute >= 0)) throw new RangeError('perMinute must not be negative')
    this.#options = options
    this.#maxKeys = Math.max(1, options.maxKeys ?? 10_000)
  }

  /** Takes one action for `key`, or says which limit refused it and when to retry. */
  take(key: string): { ok: true } | QuotaExceeded {
    const { perMinute, burst } = this.#options
    if (perMinute === 0) return { ok: true }
    let bucket = this.#buckets.get(key)
    if (bucket) this.#buckets.delete(key)
    else {
      bucket = new TokenBucket({
        capacity: burst,
        refillPerSecond: perMinute / 60,
        ...(this.#options.now ? { now: this.#options.now } : {}),
      })
      this.#evict()
    }
    this.#buckets.set(key, bucket)
    const taken = bucket.take()
    if (taken.ok) return taken
    return quotaExceeded(
      this.#options.limit ?? 'sessionRate',
      perMinute,
      taken.retryAfterMs / 1000,
      `Too many new sessions: at most ${burst} at once and ${perMinute} per minute per principal (bridge.limits.sessionRate)`
    )
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#buckets.size
  }

  #evict(): void {
    if (this.#buckets.size < this.#maxKeys) return
    // A full bucket behaves exactly like a new one, so forgetting it changes nothing.
    for (const [key, bucket] of this.#buckets) if (bucket.full) this.#buckets.delete(key)
    while (this.#buckets.size >= this.#maxKeys) {
      this.#buckets.delete(this.#buckets.keys().next().value!)
    }
  }
}
