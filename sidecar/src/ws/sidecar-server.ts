/**
 * @module
 * One session's network face: the WebSocket endpoint bridges dial, on a
 * {@link SidecarListener} of its own (a sidecar in a pod) or one shared with other
 * sessions (the local runtime's sidecar host). The upgrade is refused unless it names
 * this session and carries the per-session secret, so a reused pod IP, or another
 * session's bridge on a shared listener, can never reach this session.
 */
import type { IncomingMessage } from 'node:http'
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
import { SidecarListener, refuseUpgrade } from './sidecar-listener.ts'

export interface SidecarServerOptions {
  sessionName: string
  /** Verifier of the per-session secret bridges must present. */
  verifier: string
  /** Where to listen when the session has a listener of its own. */
  host: string
  port: number
  /** A listener shared with other sessions; `host` and `port` are then ignored. */
  listener?: SidecarListener
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

export class SidecarServer {
  private readonly options: SidecarServerOptions
  private readonly listener: SidecarListener
  /** Whether the listener is this session's alone, to close with it. */
  private readonly ownsListener: boolean
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
      // Bridges are authenticated at the upgrade and every frame is decoded and JSON-checked by
      // decodeBridgeFrame, where invalid bytes would only become U+FFFD: skip a pass per frame.
      skipUTF8Validation: true,
      handleProtocols: (protocols) => (protocols.has(FRAME_PROTOCOL) ? FRAME_PROTOCOL : false),
    })
    this.ownsListener = options.listener === undefined
    this.listener =
      options.listener ??
      new SidecarListener({ host: options.host, port: options.port, logger: options.logger })
  }

  /** Starts serving (listening first unless the listener is shared); resolves with the port. */
  async listen(handler: SidecarServerHandler): Promise<number> {
    this.handler = handler
    const port = this.ownsListener ? await this.listener.listen() : this.listener.port
    this.listener.add(this.options.sessionName, this)
    this.heartbeat = setInterval(() => this.ping(), this.options.heartbeatMs)
    this.heartbeat.unref()
    return port
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
    this.listener.remove(this.options.sessionName)
    if (this.ownsListener) await this.listener.close()
  }

  /** An upgrade naming this session (the listener routed it here). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const { verifier, logger } = this.options
    // The session is over: to a bridge dialling now, it is gone.
    if (this.closing) return refuseUpgrade(socket, 404, 'Not Found')
    const authorization = req.headers[UpgradeHeader.authorization] ?? ''
    const presented = authorization.startsWith('Bearer ') ? authorization.slice(7) : ''
    if (!verifies(presented, verifier)) {
      logger.warn({}, 'refused a connection without the session secret')
      return refuseUpgrade(socket, 401, 'Unauthorized')
    }
    // ws would complete a handshake that offers no subprotocol (or only others) without
    // one; a client that does not speak this frame protocol must not get a connection.
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
    if (!offered.includes(FRAME_PROTOCOL)) {
      logger.warn({ offered }, `refused a connection that does not offer ${FRAME_PROTOCOL}`)
      return refuseUpgrade(socket, 400, 'Bad Request')
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
