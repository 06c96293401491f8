/**
 * @module
 * `bridge.local.maxConcurrentStarts`: at most so many local session starts boot at once; the
 * rest wait in arrival order. Booting a server is mostly CPU (loading its code), so starts
 * beyond the machine's cores only share the CPU and all finish late, each one slower the more
 * arrive together, until a burst makes every start miss its `startTimeout`. Let in about as
 * many as there are cores, the first ones finish sooner and the rest no later.
 *
 * A wait counts against the start's own deadline. When starts keep arriving faster than they
 * boot, the start next in line has waited longest and may have too little time left to boot:
 * admitting it would spend a slot on a server killed at its deadline, and the next one, and so
 * on, until no start succeeds. So a start whose time left is shorter than its server's recent
 * starts took is refused at its turn ({@link StartTooLate}) and the slot goes to the next.
 */

/** A turn to boot: release it when the start is over, saying whether the server answered. */
export interface StartTurn {
  /**
   * Frees the slot. `answered`: the server answered `initialize`, so the time the turn was held
   * is how long a start of this server takes now. More calls do nothing.
   */
  release(answered: boolean): void
}

/** What a start asks the gate for. */
export interface StartTurnRequest {
  /** The catalog name of the server: start times are learned per server. */
  server: string
  /** When the start times out (epoch ms): a turn that came too late for it is refused. */
  deadline: number
}

/** A start refused at its turn: too little of its time was left to boot its server. */
export class StartTooLate extends Error {
  /** How long a start of this server recently took, in ms. */
  readonly typicalMs: number
  constructor(typicalMs: number) {
    super(`too little time left to start: a start of this server takes about ${typicalMs} ms`)
    this.name = 'StartTooLate'
    this.typicalMs = typicalMs
  }
}

/** Weight of the newest start in a server's moving average of start times. */
const SMOOTHING = 0.25

interface Waiter {
  request: StartTurnRequest
  admit(): void
  refuse(error: StartTooLate): void
}

export class StartGate {
  readonly #limit: number
  #running = 0
  readonly #waiting: Waiter[] = []
  /** Moving average of the answered starts' turn lengths, by server. */
  readonly #typicalMs = new Map<string, number>()

  /** `limit` starts at once; `0` means no limit. */
  constructor(limit: number) {
    if (!(Number.isInteger(limit) && limit >= 0)) {
      throw new RangeError('maxConcurrentStarts must be a non-negative integer')
    }
    this.#limit = limit
  }

  /** Most starts at once; `0` means no limit. */
  get limit(): number {
    return this.#limit
  }

  /** Starts holding a turn now. */
  get running(): number {
    return this.#running
  }

  /** Starts waiting for a turn now. */
  get waiting(): number {
    return this.#waiting.length
  }

  /**
   * Resolves with a turn once a slot is free. Rejects with `signal.reason` if the signal aborts
   * first, or with {@link StartTooLate} if the turn came too late for `request.deadline`; a
   * refused or abandoned wait holds nothing.
   */
  acquire(signal: AbortSignal, request: StartTurnRequest): Promise<StartTurn> {
    if (signal.aborted) return Promise.reject(signal.reason as Error)
    if (this.#limit === 0 || this.#running < this.#limit) {
      this.#running++
      return Promise.resolve(this.#turn(request))
    }
    return new Promise<StartTurn>((resolve, reject) => {
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1)
        reject(signal.reason as Error)
      }
      const waiter: Waiter = {
        request,
        admit: () => {
          signal.removeEventListener('abort', onAbort)
          resolve(this.#turn(request))
        },
        refuse: (error) => {
          signal.removeEventListener('abort', onAbort)
          reject(error)
        },
      }
      this.#waiting.push(waiter)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  #turn(request: StartTurnRequest): StartTurn {
    const admitted = performance.now()
    let released = false
    return {
      release: (answered) => {
        if (released) return
        released = true
        if (answered) {
          const took = performance.now() - admitted
          const typical = this.#typicalMs.get(request.server)
          this.#typicalMs.set(
            request.server,
            typical === undefined ? took : typical + SMOOTHING * (took - typical)
          )
        }
        this.#handOver()
      },
    }
  }

  /** Passes a freed slot straight to the next start that can still use it. */
  #handOver(): void {
    for (let next = this.#waiting.shift(); next; next = this.#waiting.shift()) {
      const typical = this.#typicalMs.get(next.request.server)
      if (typical !== undefined && next.request.deadline - Date.now() < typical) {
        next.refuse(new StartTooLate(Math.round(typical)))
        continue
      }
      next.admit()
      return
    }
    this.#running--
  }
}
