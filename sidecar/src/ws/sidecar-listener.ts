/**
 * @module
 * The HTTP listener bridges dial: `/healthz` (the pod's readiness probe) and the WebSocket
 * upgrade, handed to the session the upgrade names. A sidecar in a pod registers its one
 * session; the local runtime's shared sidecar host registers every session it runs on one
 * port. An upgrade naming no session registered here is answered 404: to that bridge the
 * session is gone (a reused pod IP or port, or a session that ended).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { type Logger, UpgradeHeader } from '@ferry/shared'

/** A session's side of the listener: it decides whether to accept an upgrade naming it. */
export interface UpgradeTarget {
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
}

export interface SidecarListenerOptions {
  host: string
  port: number
  /** A Unix socket to listen on instead of `host` and `port` (the local sidecar host). */
  socket?: string
  logger: Logger
}

/** Answers an upgrade with a bare HTTP status and closes the socket. */
export const refuseUpgrade = (socket: Duplex, status: number, text: string): void => {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

export class SidecarListener {
  private readonly options: SidecarListenerOptions
  private readonly http: Server
  private readonly targets = new Map<string, UpgradeTarget>()
  private boundPort: number | undefined

  constructor(options: SidecarListenerOptions) {
    this.options = options
    this.http = createServer((req, res) => {
      if (req.url === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
      } else {
        res.writeHead(404).end()
      }
    })
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const session = req.headers[UpgradeHeader.session]
      const target = typeof session === 'string' ? this.targets.get(session) : undefined
      if (!target) {
        this.options.logger.warn(
          { presented: typeof session === 'string' ? session : undefined },
          'refused a connection for a session not served here'
        )
        return refuseUpgrade(socket, 404, 'Not Found')
      }
      target.upgrade(req, socket, head)
    })
  }

  /** Starts listening; resolves with the bound port (0 on a Unix socket). */
  async listen(): Promise<number> {
    const { socket, port, host } = this.options
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject)
      const listening = () => {
        this.http.off('error', reject)
        resolve()
      }
      if (socket === undefined) this.http.listen(port, host, listening)
      else this.http.listen(socket, listening)
    })
    const address = this.http.address()
    this.boundPort = typeof address === 'object' && address ? address.port : 0
    return this.boundPort
  }

  /** The bound port (0 on a Unix socket); only once listening. */
  get port(): number {
    if (this.boundPort === undefined) throw new Error('the sidecar listener is not listening')
    return this.boundPort
  }

  /** Routes upgrades naming `sessionName` to `target`. */
  add(sessionName: string, target: UpgradeTarget): void {
    if (this.targets.has(sessionName)) throw new Error(`session ${sessionName} is already served`)
    this.targets.set(sessionName, target)
  }

  remove(sessionName: string): void {
    this.targets.delete(sessionName)
  }

  /** Stops listening (removing a Unix socket's file) and drops every connection still open. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()))
    this.http.closeAllConnections()
    await closed
  }
}
