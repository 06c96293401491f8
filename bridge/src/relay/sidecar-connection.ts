/**
 * @module
 * One WebSocket from this bridge replica to a session's sidecar, multiplexing the
 * session's HTTP exchanges as channels. The bridge dials; the sidecar checks the
 * session name and per-session secret at the upgrade. When the socket drops, every
 * open channel learns it at once, so no HTTP request waits on a dead connection.
 */
import WebSocket from 'ws'
import {
  type EventFrame,
  type ExitReason,
  type SidecarFrameHeader,
  FRAME_PROTOCOL,
  UpgradeHeader,
  decodeSidecarFrame,
  encodeFrame,
} from '@ferry/shared'

/** What a channel hears back from the sidecar. */
export interface ChannelListener {
  /** One event; `frame` has the sidecar's trace context and, on `fin`, the response's error type. */
  onevent(id: string, payload: string, fin: boolean, frame: EventFrame): void
  /** The stream has nothing more for this channel. */
  onend(reason: 'complete' | 'cancelled' | 'takeover' | 'session'): void
  onerror(code: string, message: string): void
  /** Events were evicted from the sidecar's log before this resume. */
  ongap?(missed: number): void
  /** A `msg`, `bye` or `get` was accepted; the channel stays open until released. */
  onack?(): void
  /** The connection is gone (`exit` says the session is over; otherwise the socket dropped). */
  onlost(exit: SessionExit | undefined): void
}

export interface SessionExit {
  reason: ExitReason
  code?: number | null
  signal?: string | null
  /** How long the session ran; on the one copy of `exit` whose receiver counts the end. */
  ageMs?: number
}

/** Why a dial failed: the session is gone (404 for the client) or unreachable. */
export class DialError extends Error {
  readonly gone: boolean
  constructor(message: string, gone: boolean) {
    super(message)
    this.name = 'DialError'
    this.gone = gone
  }
}

/** See `generateMask` in {@link SidecarConnection.dial}. */
const zeroMask = (mask: Buffer) => {
  mask.fill(0)
}

// ENOENT: the Unix socket of a local sidecar host is gone with it.
const GONE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ECONNRESET', 'EPIPE', 'ENOENT'])

export interface DialOptions {
  address: string
  sessionName: string
  secret: string
  timeoutMs: number
  maxPayload: number
  /** The sidecar pings at this interval; silence for two intervals drops the socket. */
  heartbeatMs: number
}

export class SidecarConnection {
  readonly sessionName: string
  private readonly ws: WebSocket
  private readonly channels = new Map<number, ChannelListener>()
  private nextChannel = 1
  private lastUsed = Date.now()
  private exit: SessionExit | undefined
  private watchdog: NodeJS.Timeout | undefined

  /** Called once when the socket closes, for whatever reason. */
  onclose?: (exit: SessionExit | undefined) => void
  /** Called when the sidecar says the session is over, before its socket closes. */
  onexit?: (exit: SessionExit) => void
  /** Called with the number of events the sidecar evicted from its log since its last report. */
  onevicted?: (count: number) => void

  private constructor(ws: WebSocket, sessionName: string, heartbeatMs: number) {
    this.ws = ws
    this.sessionName = sessionName
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.receive(data.toString())
    })
    ws.on('close', () => this.closed())
    ws.on('error', () => undefined)
    const armWatchdog = () => {
      clearTimeout(this.watchdog)
      this.watchdog = setTimeout(() => ws.terminate(), heartbeatMs * 2 + 1000)
      this.watchdog.unref()
    }
    ws.on('ping', armWatchdog)
    armWatchdog()
  }

  /** Dials a sidecar; rejects with {@link DialError}. */
  static dial(options: DialOptions): Promise<SidecarConnection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(options.address, FRAME_PROTOCOL, {
        perMessageDeflate: false,
        maxPayload: options.maxPayload,
        // The sidecar is authenticated and sends text it encoded itself; were a byte invalid,
        // decoding the frame would turn it into U+FFFD, which the JSON header check still sees.
        skipUTF8Validation: true,
        // An all-zero mask lets ws skip masking and send the frame text as it is. Masking only
        // keeps a browser's frames from poisoning intermediary caches; this is a server-to-server
        // link between a bridge and the sidecar it authenticated, with no browser involved.
        generateMask: zeroMask,
        handshakeTimeout: options.timeoutMs,
        headers: {
          [UpgradeHeader.session]: options.sessionName,
          [UpgradeHeader.authorization]: `Bearer ${options.secret}`,
        },
      })
      const fail = (error: DialError) => {
        ws.removeAllListeners()
        ws.on('error', () => undefined)
        ws.terminate()
        reject(error)
      }
      ws.once('open', () => {
        ws.removeAllListeners()
        resolve(new SidecarConnection(ws, options.sessionName, options.heartbeatMs))
      })
      ws.once('unexpected-response', (_req, res) => {
        const status = res.statusCode ?? 0
        res.resume()
        // A refusal means whatever answered is not this session's sidecar (404: another
        // session, 401: another secret, others: not a sidecar), so the session is gone;
        // a 5xx says "try later" and proves nothing.
        fail(new DialError(`the sidecar refused the connection (HTTP ${status})`, status < 500))
      })
      ws.once('error', (error: NodeJS.ErrnoException) => {
        // Refused or reset: nothing there speaks for this session. A timeout may be
        // load or a network fault, so it is not taken as proof the session is gone.
        const gone = error.code !== undefined && GONE_CODES.has(error.code)
        fail(new DialError(`cannot reach the sidecar: ${error.code ?? error.message}`, gone))
      })
    })
  }

  /** Open and usable: the socket is up and the session has not ended. */
  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN && this.exit === undefined
  }

  /** How the session ended, once the sidecar said so. */
  get ended(): SessionExit | undefined {
    return this.exit
  }

  get openChannels(): number {
    return this.channels.size
  }

  /** Milliseconds since a channel was last opened or closed. */
  idleFor(now = Date.now()): number {
    return this.channels.size > 0 ? 0 : now - this.lastUsed
  }

  /** Opens a channel and sends its first frame. */
  open(
    header:
      { t: 'req' | 'msg'; tp?: string; ts?: string } | { t: 'get'; after?: string } | { t: 'bye' },
    payload: string | undefined,
    listener: ChannelListener
  ): number {
    const ch = this.nextChannel++
    this.lastUsed = Date.now()
    if (!this.isOpen) {
      queueMicrotask(() => listener.onlost(this.exit))
      return ch
    }
    this.channels.set(ch, listener)
    this.ws.send(encodeFrame({ ...header, ch } as Parameters<typeof encodeFrame>[0], payload))
    return ch
  }

  /** Stops listening on a channel, telling the sidecar unless the stream already ended. */
  release(ch: number, tellSidecar: boolean): void {
    if (!this.channels.delete(ch)) return
    this.lastUsed = Date.now()
    if (tellSidecar && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(encodeFrame({ t: 'detach', ch }))
    }
  }

  close(): void {
    this.ws.close(1000, 'idle')
  }

  private receive(text: string): void {
    const frame = decodeSidecarFrame(text)
    if (!frame) {
      this.ws.close(1008, 'malformed frame')
      return
    }
    const header: SidecarFrameHeader = frame.header
    if (header.t === 'exit') {
      if (header.evicted) this.onevicted?.(header.evicted)
      const { reason, code, signal, ageMs } = header
      this.exit = ageMs === undefined ? { reason, code, signal } : { reason, code, signal, ageMs }
      this.onexit?.(this.exit)
      return
    }
    if (header.t === 'ev' && header.evicted) this.onevicted?.(header.evicted)
    const listener = this.channels.get(header.ch)
    if (!listener) return
    switch (header.t) {
      case 'ev':
        if (header.fin) this.forget(header.ch)
        listener.onevent(header.id, frame.payload ?? '', header.fin === 1, header)
        return
      case 'end':
        this.forget(header.ch)
        listener.onend(header.reason)
        return
      case 'err':
        this.forget(header.ch)
        listener.onerror(header.code, header.message)
        return
      case 'ack':
        listener.onack?.()
        return
      case 'gap':
        listener.ongap?.(header.missed)
        return
    }
  }

  /** A channel the sidecar ended: closing one counts as use, like opening one. */
  private forget(ch: number): void {
    this.channels.delete(ch)
    this.lastUsed = Date.now()
  }

  private closed(): void {
    clearTimeout(this.watchdog)
    const listeners = [...this.channels.values()]
    this.channels.clear()
    for (const listener of listeners) listener.onlost(this.exit)
    this.onclose?.(this.exit)
  }
}
