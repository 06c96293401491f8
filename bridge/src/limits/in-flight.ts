/**
 * @module
 * Concurrency limits keyed by session: `bridge.limits.maxInFlightPerSession` (requests awaiting
 * their response) and `bridge.limits.maxStreamsPerSession` (open SSE streams: `GET` and
 * streamed `POST` answers). Counts are in memory, per replica: a client spreading one session's
 * requests over R replicas can hold up to R × the limit, which still bounds what one session
 * can pin on each replica.
 */
import { type QuotaExceeded, quotaExceeded } from './quota.ts'

/** A held slot; release it exactly when the request or stream ends (more calls do nothing). */
export interface Permit {
  readonly ok: true
  release(): void
}

export interface InFlightLimiterOptions {
  /** Most slots per key; `0` means no limit. */
  limit: number
  /** The limit's name in refusals. */
  name: 'maxInFlightPerSession' | 'maxStreamsPerSession'
  /** `Retry-After` of a refusal, in seconds. Default `1`. */
  retryAfterSeconds?: number
}

const DESCRIPTIONS = {
  maxInFlightPerSession: 'requests in flight',
  maxStreamsPerSession: 'open SSE streams',
} as const

export class InFlightLimiter {
  readonly #options: InFlightLimiterOptions
  readonly #counts = new Map<string, number>()

  constructor(options: InFlightLimiterOptions) {
    if (!(options.limit >= 0)) throw new RangeError('limit must not be negative')
    this.#options = options
  }

  /** Takes a slot for `key` (a session name), or refuses when it already holds `limit`. */
  acquire(key: string): Permit | QuotaExceeded {
    const { limit, name } = this.#options
    const held = this.#counts.get(key) ?? 0
    if (limit > 0 && held >= limit) {
      return quotaExceeded(
        name,
        limit,
        this.#options.retryAfterSeconds ?? 1,
        `Too many ${DESCRIPTIONS[name]} in this session: at most ${limit} (bridge.limits.${name})`
      )
    }
    this.#counts.set(key, held + 1)
    let released = false
    return {
      ok: true,
      release: () => {
        if (released) return
        released = true
        const left = (this.#counts.get(key) ?? 1) - 1
        if (left > 0) this.#counts.set(key, left)
        else this.#counts.delete(key) // no entry for idle sessions, so the map cannot grow
      },
    }
  }

  /** Slots `key` holds now. */
  count(key: string): number {
    return this.#counts.get(key) ?? 0
  }

  /** Keys holding at least one slot. */
  get size(): number {
    return this.#counts.size
  }
}
