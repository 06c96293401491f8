/**
 * Benchmark-only session host: many sessions in one process, each the real
 * sidecar session code (`SidecarSession`, `EventLog`, the frame codec) behind its
 * own WebSocket, with a trivial in-process echo server instead of a child
 * process. One listener serves every session, routed by the session header the
 * bridge sends, because ten thousand listening ports do not fit in the fd limit.
 *
 * Control: `POST /start?session=<name>&secret=<secret>` creates a session.
 */
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import {
  FRAME_PROTOCOL,
  UpgradeHeader,
  classifyMessage,
  decodeBridgeFrame,
  encodeFrame,
  silentLogger,
} from '@ferry/shared'
import { EventLog, SidecarSession, type BridgePeer } from '@ferry/sidecar'

interface Hosted {
  secret: string
  session: SidecarSession
}

const sessions = new Map<string, Hosted>()
let nextPeer = 1

const createSession = (secret: string): Hosted => {
  const log = new EventLog<{ peer: BridgePeer; ch: number }>({
    maxEvents: 100,
    maxBytes: 1 << 20,
    maxAgeMs: 60_000,
  })
  const hosted: Hosted = { secret, session: undefined as unknown as SidecarSession }
  hosted.session = new SidecarSession({
    log,
    logger: silentLogger,
    idleTimeoutMs: 3_600_000,
    server: {
      send: (line) => {
        const message = classifyMessage(JSON.parse(line))
        if (message?.kind !== 'request') return true
        const { id, method, params } = message.message
        const result =
          method === 'initialize'
            ? {
                protocolVersion: '2025-06-18',
                capabilities: { tools: {} },
                serverInfo: { name: 'echo', version: '1' },
              }
            : {
                content: [
                  { type: 'text', text: `Echo: ${JSON.stringify(params?.arguments ?? {})}` },
                ],
              }
        setImmediate(() =>
          hosted.session.handleServerLine(JSON.stringify({ jsonrpc: '2.0', id, result }))
        )
        return true
      },
    },
  })
  return hosted
}

const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  handleProtocols: () => FRAME_PROTOCOL,
})
const http = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://host')
  if (req.method === 'POST' && url.pathname === '/start') {
    const name = url.searchParams.get('session') ?? ''
    sessions.set(name, createSession(url.searchParams.get('secret') ?? ''))
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }))
    return
  }
  res.writeHead(404).end()
})
http.on('upgrade', (req, socket, head) => {
  const hosted = sessions.get(String(req.headers[UpgradeHeader.session]))
  if (!hosted || req.headers.authorization !== `Bearer ${hosted.secret}`) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')
    return
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const peer: BridgePeer = {
      id: nextPeer++,
      send: (header, payload) => ws.send(encodeFrame(header, payload)),
    }
    hosted.session.addPeer(peer)
    ws.on('message', (data) => {
      const frame = decodeBridgeFrame(data.toString())
      if (frame) hosted.session.handleBridgeFrame(peer, frame)
    })
    ws.on('close', () => hosted.session.removePeer(peer))
  })
})
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (http.address() as { port: number }).port })}\n`)
})
