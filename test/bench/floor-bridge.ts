/**
 * Benchmark-only: the least a bridge can do, for the two-hop floor. Ferry's architecture puts
 * two processes between the client and the server (client → HTTP bridge → WebSocket → sidecar
 * → stdio server); this pair (with floor-relay.ts) does exactly that hop count with the same
 * libraries and nothing else — no sessions, checks, auth, limits, logs or SSE, one fixed
 * session id — so its latency is the floor any implementation of the architecture pays on
 * this machine. It is measured beside Ferry, not used for anything else.
 *
 * Usage: `node floor-bridge.ts <relay socket> <port>`; prints `ready` once listening.
 */
import { createServer, type ServerResponse } from 'node:http'
import WebSocket from 'ws'

const [socket, port] = process.argv.slice(2)
if (!socket || !port) throw new Error('usage: floor-bridge.ts <relay socket> <port>')

const pending = new Map<number, ServerResponse>()
let nextChannel = 1
const relay = new WebSocket(`ws+unix://${socket}`, {
  perMessageDeflate: false,
  skipUTF8Validation: true,
  generateMask: (mask) => mask.fill(0),
})
relay.on('message', (data) => {
  const text = data.toString()
  const newline = text.indexOf('\n')
  const { ch } = JSON.parse(text.slice(0, newline)) as { ch: number }
  const res = pending.get(ch)
  if (!res) return
  pending.delete(ch)
  const body = text.slice(newline + 1)
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'mcp-session-id': 'floor',
  })
  res.end(body)
})
relay.once('open', () => {
  createServer((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(200).end()
      return
    }
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      const ch = nextChannel++
      const { id } = JSON.parse(body) as { id?: unknown }
      if (id === undefined) {
        relay.send(`{"t":"msg","ch":${ch}}\n${body}`)
        res.writeHead(202).end()
        return
      }
      pending.set(ch, res)
      relay.send(`{"t":"req","ch":${ch}}\n${body}`)
    })
  }).listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\n'))
})
