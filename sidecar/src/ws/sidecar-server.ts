/**
 * @module
 * The sidecar's network face: an HTTP server with `/healthz` (the pod's readiness
 * probe) and the WebSocket endpoint bridges dial. The upgrade is refused unless
 * it names this sidecar's session and carries the per-session secret, so a
 * reused pod IP can never reach another session.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { createHash, timingSafeEqual } from 'node:crypto'
import { WebSocketServer, type WebSocket } from 'ws'
import {
  type BridgeFrameHeader,
  type Frame,
  type Logger,
  type SidecarFrameHeader,
  FRAME_PROTOCOL,
  UpgradeHeader,
  decodeBridgeFrame,
  encodeFrame,
} from '@ferry/shared'
import type { BridgePeer } from '../session/sidecar-session.ts'

export interface SidecarServerOptions {
  sessionName: string
  /** Verifier of the per-session secret bridges must present. */
  verifier: string
  host: string
  port: number
  /** Largest frame accepted from a bridge. */
  maxPayload: number
  /** Ping interval; a connection that missed a whole interval's pong is dropped. */
  heartbeatMs: number
  /** Outbound bytes queued on one connection above which the server's output pauses. */
  highWaterMark: number
  logger: Logger
}

/** What the server hands each connection's events to. */
export interface SidecarServerHandler {
  onpeer(peer: BridgePeer): void
  onframe(peer: BridgePeer, frame: Frame<BridgeFrameHeader>): void
  onpeerclose(peer: BridgePeer): void
  /** Output should pause (true) or may resume (false) because of a slow bridge connection. */
  onbackpressure(paused: boolean): void
}

/** Whether `presented` is the secret `verifier` was made from; constant-time. */
const verifies = (presented: string, verifier: string) => {
  const digest = createHash('sha256').update(presented).digest()
  const expected = Buffer.from(verifier, 'base64url')
  return expected.length === digest.length && timingSafeEqual(digest, expected)
}

const refuse = (socket: Duplex, status: number, text: string) => {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

export class SidecarServer {
  private readonly options: SidecarServerOptions
  private readonly http: Server
  private readonly wss: WebSocketServer
  /** Open connections, and whether each answered the last ping. */
  private readonly sockets = new Map<WebSocket, { peer: BridgePeer; alive: boolean }>()
  private readonly congested = new Set<WebSocket>()
  private heartbeat: NodeJS.Timeout | undefined
  private closing = false
  private nextPeerId = 1
  private handler: SidecarServerHandler | undefined

  constructor(options: SidecarServerOptions) {
    this.options = options
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: options.maxPayload,
      handleProtocols: (protocols) => (protocols.has(FRAME_PROTOCOL) ? FRAME_PROTOCOL : false),
    })
    this.http = createServer((req, res) => {
      if (req.url === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
      } else {
        res.writeHead(404).end()
      }
    })
    this.http.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head))
  }

  /** Starts listening; resolves with the bound port. */
  async listen(handler: SidecarServerHandler): Promise<number> {
    this.handler = handler
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject)
      this.http.listen(this.options.port, this.options.host, () => {
        this.http.off('error', reject)
        resolve()
      })
    })
    this.heartbeat = setInterval(() => this.ping(), this.options.heartbeatMs)
    this.heartbeat.unref()
    const address = this.http.address()
    return typeof address === 'object' && address ? address.port : this.options.port
  }

  pauseInput(): void {
    for (const ws of this.sockets.keys()) ws.pause()
  }

  resumeInput(): void {
    for (const ws of this.sockets.keys()) ws.resume()
  }

  /** Closes every connection (after their queued frames) and the listener. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat)
    this.closing = true
    const closing = [...this.sockets.keys()].map(
      (ws) =>
        new Promise<void>((resolve) => {
          ws.once('close', () => resolve())
          ws.close(1000, 'session over')
          setTimeout(() => {
            ws.terminate()
            resolve()
          }, 1000).unref()
        })
    )
    await Promise.all(closing)
    // Anything upgraded while the session was ending is dropped outright.
    for (const ws of this.sockets.keys()) ws.terminate()
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()))
    this.http.closeAllConnections()
    await closed
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const { sessionName, verifier, logger } = this.options
    // The session is over: to a bridge dialling now, it is gone.
    if (this.closing) return refuse(socket, 404, 'Not Found')
    const session = req.headers[UpgradeHeader.session]
    const authorization = req.headers[UpgradeHeader.authorization] ?? ''
    const presented = authorization.startsWith('Bearer ') ? authorization.slice(7) : ''
    if (session !== sessionName) {
      // Another session's bridge reached this address (a reused IP or port): to
      // it, that session is gone.
      logger.warn(
        { presented: typeof session === 'string' ? session : undefined },
        'refused a connection for another session'
      )
      return refuse(socket, 404, 'Not Found')
    }
    if (!verifies(presented, verifier)) {
      logger.warn({}, 'refused a connection without the session secret')
      return refuse(socket, 401, 'Unauthorized')
    }
    // ws would complete a handshake that offers no subprotocol (or only others) without
    // one; a client that does not speak this frame protocol must not get a connection.
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
    if (!offered.includes(FRAME_PROTOCOL)) {
      logger.warn({ offered }, `refused a connection that does not offer ${FRAME_PROTOCOL}`)
      return refuse(socket, 400, 'Bad Request')
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws))
  }

  private accept(ws: WebSocket): void {
    const handler = this.handler!
    const peer: BridgePeer = {
      id: this.nextPeerId++,
      send: (header: SidecarFrameHeader, payload?: string) => this.send(ws, header, payload),
    }
    const connection = { peer, alive: true }
    this.sockets.set(ws, connection)
    ws.on('pong', () => (connection.alive = true))
    ws.on('message', (data, isBinary) => {
      const frame = isBinary ? undefined : decodeBridgeFrame(data.toString())
      if (!frame) {
        this.options.logger.warn(
          { peer: peer.id },
          'closed a connection that sent a malformed frame'
        )
        ws.close(1008, 'malformed frame')
        return
      }
      handler.onframe(peer, frame)
    })
    ws.on('close', () => {
      this.sockets.delete(ws)
      this.uncongest(ws)
      handler.onpeerclose(peer)
    })
    ws.on('error', (error) =>
      this.options.logger.warn({ peer: peer.id, error: error.message }, 'bridge connection error')
    )
    handler.onpeer(peer)
  }

  private send(ws: WebSocket, header: SidecarFrameHeader, payload?: string): void {
    if (ws.readyState !== ws.OPEN) return
    const { highWaterMark } = this.options
    if (ws.bufferedAmount < highWaterMark) {
      ws.send(encodeFrame(header, payload))
      return
    }
    // Past the mark: stop reading the server until this connection drains.
    ws.send(encodeFrame(header, payload), () => {
      if (ws.bufferedAmount < highWaterMark) this.uncongest(ws)
    })
    if (!this.congested.has(ws)) {
      this.congested.add(ws)
      if (this.congested.size === 1) this.handler?.onbackpressure(true)
    }
  }

  private uncongest(ws: WebSocket): void {
    if (this.congested.delete(ws) && this.congested.size === 0) this.handler?.onbackpressure(false)
  }

  private ping(): void {
    for (const [ws, connection] of this.sockets) {
      if (!connection.alive) {
        ws.terminate()
        continue
      }
      connection.alive = false
      ws.ping()
    }
  }
}
