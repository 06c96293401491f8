/**
 * @module
 * A server-sent-events response body built on a web `ReadableStream`. Writes are
 * queued, never awaited: the queue's size is watched instead, and a client that
 * falls too far behind is cut off with a `retry` hint. That is safe because every
 * event also sits in the sidecar's log, and it keeps one slow reader from
 * stalling the WebSocket shared by the session's other streams.
 */

const encoder = new TextEncoder()

export interface SseStreamOptions {
  /** Interval of `:` keep-alive comments, so proxies keep the connection open. */
  keepAliveMs: number
  /** Bytes queued for a slow client before the stream is cut off. */
  maxBacklogBytes: number
  /** Open streams, so a draining bridge can end them all; the stream adds and removes itself. */
  registry?: Set<SseStream>
  /** Called once when the stream ends for any reason (closed, drained, cut off, client gone). */
  onstop?: () => void
}

export const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  // Tell nginx-style proxies not to buffer the stream.
  'x-accel-buffering': 'no',
} as const

export class SseStream {
  readonly body: ReadableStream<Uint8Array>
  private controller!: ReadableStreamDefaultController<Uint8Array>
  private closed = false
  private readonly keepAlive: NodeJS.Timeout | undefined
  private readonly maxBacklogBytes: number
  private readonly registry: Set<SseStream> | undefined
  private readonly onstop: (() => void) | undefined

  /** The client went away, was cut off, or the bridge is draining; called once. */
  onclose?: (reason: 'client' | 'backlog' | 'drain') => void

  constructor(options: SseStreamOptions) {
    this.maxBacklogBytes = options.maxBacklogBytes
    this.registry = options.registry
    this.onstop = options.onstop
    this.registry?.add(this)
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller
        },
        cancel: () => this.finish('client'),
      },
      new ByteLengthQueuingStrategy({ highWaterMark: options.maxBacklogBytes })
    )
    if (options.keepAliveMs > 0) {
      this.keepAlive = setInterval(() => this.write(': keep-alive\n\n'), options.keepAliveMs)
      this.keepAlive.unref()
    }
  }

  get isClosed(): boolean {
    return this.closed
  }

  /** One `message` event; `data` is a single-line JSON text. */
  event(id: string | undefined, data: string): void {
    this.write(
      id === undefined
        ? `event: message\ndata: ${data}\n\n`
        : `event: message\nid: ${id}\ndata: ${data}\n\n`
    )
  }

  /** The SEP-1699 priming event: an id and empty data, with the reconnection delay. */
  prime(id: string, retryMs: number): void {
    this.write(`id: ${id}\nretry: ${retryMs}\ndata: \n\n`)
  }

  /** A `retry` hint alone, sent before closing a connection the client should resume. */
  retry(retryMs: number): void {
    this.write(`retry: ${retryMs}\n\n`)
  }

  comment(text: string): void {
    this.write(`: ${text.replaceAll('\n', ' ')}\n\n`)
  }

  /**
   * Ends the response between two events with a `retry` hint, because this replica is
   * going away: the client reconnects with `Last-Event-ID`, on another replica.
   */
  drain(retryMs: number): void {
    if (this.closed) return
    this.retry(retryMs)
    this.stop()
    this.controller.close()
    this.onclose?.('drain')
  }

  /** Ends the response normally. */
  close(): void {
    if (this.closed) return
    this.stop()
    this.controller.close()
  }

  private write(text: string): void {
    if (this.closed) return
    this.controller.enqueue(encoder.encode(text))
    if ((this.controller.desiredSize ?? 0) < 0) {
      this.controller.error(new Error('client too slow'))
      this.finish('backlog')
    }
  }

  private finish(reason: 'client' | 'backlog'): void {
    if (this.closed) return
    this.stop()
    this.onclose?.(reason)
  }

  private stop(): void {
    this.closed = true
    clearInterval(this.keepAlive)
    this.registry?.delete(this)
    this.onstop?.()
  }
}
