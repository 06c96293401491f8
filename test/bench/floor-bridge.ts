/**
 * Benchmark-only: the least a bridge can do, for the two-hop floor. Ferry's architecture puts
 * two processes between the client and the server (client → HTTP bridge → WebSocket → sidecar
 * → stdio server); this pair (with floor-relay.ts) does exactly that hop count with the same
 * libraries and nothing else — no sessions, checks, auth, limits, logs or SSE, one fixed
 * session id — so its latency is the floor any implementation of the architecture pays on
 * this machine. It is measured beside Ferry, not used for anything else.
 *
 * `node` serves HTTP with `node:http` directly; `hono` serves the same relaying through Hono and
 * @hono/node-server with web-standard Request/Response, as Ferry's bridge does, so the two
 * differ by what that adapter layer costs.
 *
 * Usage: `node floor-bridge.ts <relay socket> <port> [node|hono]`; prints `ready` once listening.
 */
import { createServer } from 'node:http'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import WebSocket from 'ws'

const [socket, port, front = 'node'] = process.argv.slice(2)
if (!socket || !port || (front !== 'node' && front !== 'hono')) {
  throw new Error('usage: floor-bridge.ts <relay socket> <port> [node|hono]')
}

const JSON_HEADERS = { 'content-type': 'application/json', 'mcp-session-id': 'floor' }
const pending = new Map<number, (body: string) => void>()
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
  const answer = pending.get(ch)
  if (!answer) return
  pending.delete(ch)
  answer(text.slice(newline + 1))
})

/** Relays one POST body: the response's body for a request, undefined for a notification. */
const forward = (body: string): Promise<string> | undefined => {
  const ch = nextChannel++
  const { id } = JSON.parse(body) as { id?: unknown }
  if (id === undefined) {
    relay.send(`{"t":"msg","ch":${ch}}\n${body}`)
    return undefined
  }
  return new Promise((resolve) => {
    pending.set(ch, resolve)
    relay.send(`{"t":"req","ch":${ch}}\n${body}`)
  })
}

const listening = () => process.stdout.write('ready\n')

const serveNode = () =>
  createServer((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(200).end()
      return
    }
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      const answer = forward(body)
      if (!answer) {
        res.writeHead(202).end()
        return
      }
      void answer.then((payload) => {
        res.writeHead(200, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(payload) })
        res.end(payload)
      })
    })
  }).listen(Number(port), '127.0.0.1', listening)

const serveHono = () => {
  const app = new Hono()
  app.all('/mcp', async (c) => {
    if (c.req.method !== 'POST') return new Response(null)
    const answer = forward(await c.req.text())
    if (!answer) return new Response(null, { status: 202 })
    return new Response(await answer, { headers: JSON_HEADERS })
  })
  serve({ fetch: app.fetch, port: Number(port), hostname: '127.0.0.1' }, listening)
}

relay.once('open', front === 'node' ? serveNode : serveHono)

// Exit through process.exit on SIGTERM, so that under `--cpu-prof` (the bench's profile phase)
// the profile is written.
process.once('SIGTERM', () => process.exit(0))
