/**
 * @module
 * `bridge.local.maxConcurrentStarts`: at most so many local session starts boot at once; the
 * rest wait in arrival order. Booting a server is mostly CPU (loading its code), so starts
 * beyond the machine's cores only share the CPU and all finish late, each one slower the more
 * arrive together, until a burst makes every start miss its `startTimeout`. Let in about as
 * many as there are cores, the first ones finish sooner and the rest no later. A wait counts
 * against the start's own timeout.
 */

/** Frees the slot a start holds; more calls do nothing. */
export type StartSlotRelease = () => void

export class StartGate {
  readonly #limit: number
  #running = 0
  readonly #waiting: Array<() => void> = []

  /** `limit` starts at once; `0` means no limit. */
  constructor(limit: number) {
    if (!(Number.isInteger(limit) && limit >= 0)) {
      throw new RangeError('limit must be a non-negative integer')
    }
    this.#limit = limit
  }

  /** Starts holding a slot now. */
  get running(): number {
    return this.#running
  }

  /** Starts waiting for a slot now. */
  get waiting(): number {
    return this.#waiting.length
  }

  /**
   * Resolves with the slot's release once one is free, or rejects with `signal.reason` if the
   * signal aborts first (the wait is then given up and holds nothing).
   */
  acquire(signal: AbortSignal): Promise<StartSlotRelease> {
    if (signal.aborted) return Promise.reject(signal.reason as Error)
    if (this.#limit === 0 || this.#running < this.#limit) {
      this.#running++
      return Promise.resolve(this.#release())
    }
    return new Promise<StartSlotRelease>((resolve, reject) => {
      const admit = () => {
        signal.removeEventListener('abort', onAbort)
        resolve(this.#release())
      }
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(admit), 1)
        reject(signal.reason as Error)
      }
      this.#waiting.push(admit)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  #release(): StartSlotRelease {
    let released = false
    return () => {
      if (released) return
      released = true
      // The slot passes straight to the next start in line, so a newcomer cannot take it first.
      const next = this.#waiting.shift()
      if (next) next()
      else this.#running--
    }
  }
}
