/**
 * @module
 * The session's bounded event log: every message the server sends toward the
 * client is kept here, per stream, so a broken SSE connection can be resumed on
 * any bridge replica with `Last-Event-ID`. Bounded by count, bytes and age across
 * all streams of the session; the oldest events go first.
 */

export interface EventLogLimits {
  maxEvents: number
  maxBytes: number
  maxAgeMs: number
}

export interface LoggedEvent {
  readonly stream: string
  readonly seq: number
  readonly payload: string
  /** This event is the response that completes its stream. */
  readonly fin: boolean
  readonly at: number
}

/** Where a stream's live events go: one channel of one bridge connection. */
export interface StreamListener {
  readonly peer: { readonly id: number }
  readonly ch: number
}

/**
 * One stream of the session: its events, oldest first, its next sequence number,
 * and the channel listening to it, if any.
 */
export class LoggedStream<L extends StreamListener = StreamListener> {
  readonly key: string
  readonly events: LoggedEvent[] = []
  /** The response arrived (or the request was cancelled): no event follows. */
  complete = false
  listener: L | undefined
  /** Highest sequence number sent to a listener; the standalone stream holds the rest. */
  delivered = 0
  /** Sequence number the next event gets; 0 is the priming event, so events start at 1. */
  nextSeq = 1
  /** How many of this stream's events were evicted. */
  evicted = 0

  constructor(key: string) {
    this.key = key
  }

  /** Sequence number of the oldest event still held (nextSeq when none is). */
  get firstSeq(): number {
    return this.events[0]?.seq ?? this.nextSeq
  }

  /** Events after `seq`, and how many of those were already evicted. */
  after(seq: number): { events: LoggedEvent[]; missed: number } {
    const first = this.firstSeq
    const missed = Math.max(0, first - (seq + 1))
    const start = Math.max(0, seq + 1 - first)
    return { events: this.events.slice(start), missed }
  }
}

export class EventLog<L extends StreamListener = StreamListener> {
  readonly limits: EventLogLimits
  private readonly fifo: LoggedEvent[] = []
  private head = 0
  private bytes = 0
  private readonly streams = new Map<string, LoggedStream<L>>()
  private readonly now: () => number
  /** Called with the number of events evicted, for metrics. */
  onevict?: (count: number) => void

  constructor(limits: EventLogLimits, now: () => number = Date.now) {
    this.limits = limits
    this.now = now
  }

  get size(): number {
    return this.fifo.length - this.head
  }

  get byteSize(): number {
    return this.bytes
  }

  stream(key: string): LoggedStream<L> | undefined {
    return this.streams.get(key)
  }

  /** The stream for `key`, created when missing. */
  open(key: string): LoggedStream<L> {
    let stream = this.streams.get(key)
    if (!stream) {
      stream = new LoggedStream<L>(key)
      this.streams.set(key, stream)
    }
    return stream
  }

  /**
   * Gives a finished stream's key to a new request: a client that restarted its
   * request ids (a new client object resuming the session) reuses them. The old
   * events go; sequence numbers continue, so event ids stay unique in the session.
   */
  reopen(stream: LoggedStream<L>): LoggedStream<L> {
    // Their FIFO entries no longer match the stream and are dropped when evicted.
    stream.events.length = 0
    stream.complete = false
    this.streams.set(stream.key, stream)
    return stream
  }

  /** Forgets a finished stream that holds no event and has no listener. */
  release(stream: LoggedStream<L>): void {
    if (stream.complete && stream.events.length === 0 && !stream.listener) {
      this.streams.delete(stream.key)
    }
  }

  get streamCount(): number {
    return this.streams.size
  }

  append(stream: LoggedStream<L>, payload: string, fin: boolean): LoggedEvent {
    const event: LoggedEvent = {
      stream: stream.key,
      seq: stream.nextSeq++,
      payload,
      fin,
      at: this.now(),
    }
    stream.events.push(event)
    this.fifo.push(event)
    // Payloads are JSON text; its length is close enough to bytes for a bound.
    this.bytes += payload.length
    this.evict()
    return event
  }

  /** Drops events past the age limit; called on append and periodically. */
  evict(): void {
    this.evictFor(0, 0)
  }

  /**
   * Evicts what an append of `bytes` more would evict, before that append: the sidecar sends an
   * event before logging it, and the frame reports the evictions its event causes. The append
   * that follows then evicts nothing unless the event alone exceeds the limits.
   */
  makeRoom(bytes: number): void {
    this.evictFor(1, bytes)
  }

  /** Drops the oldest events until `events` more events of `bytes` more bytes fit, and old ones. */
  private evictFor(events: number, bytes: number): void {
    const { maxEvents, maxBytes, maxAgeMs } = this.limits
    const oldest = this.now() - maxAgeMs
    let count = 0
    while (this.head < this.fifo.length) {
      const event = this.fifo[this.head]!
      if (this.size + events <= maxEvents && this.bytes + bytes <= maxBytes && event.at >= oldest) {
        break
      }
      this.fifo[this.head++] = undefined as unknown as LoggedEvent
      this.bytes -= event.payload.length
      const stream = this.streams.get(event.stream)
      if (stream && stream.events[0] === event) {
        stream.events.shift()
        stream.evicted++
        // A finished stream nobody listens to is forgotten with its last event;
        // a later resume of it is answered from its key alone.
        if (stream.complete && stream.events.length === 0 && !stream.listener) {
          this.streams.delete(stream.key)
        }
      }
      count++
    }
    // Compact the FIFO now and then instead of shifting on every eviction.
    if (this.head > 1024 && this.head * 2 > this.fifo.length) {
      this.fifo.splice(0, this.head)
      this.head = 0
    }
    if (count > 0) this.onevict?.(count)
  }
}
