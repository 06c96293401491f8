import { createHash } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import {
  type BridgeFrameHeader,
  type Frame,
  FRAME_PROTOCOL,
  decodeSidecarFrame,
  encodeFrame,
  silentLogger,
} from '@ferry/shared'
import type { BridgePeer } from '../session/sidecar-session.ts'
import { SidecarServer, type SidecarServerOptions } from './sidecar-server.ts'
import { waitUntil } from '../test-support.ts'

const SESSION = 'sess-1'
const SECRET = 'the-secret'

const servers: SidecarServer[] = []
const clients: WebSocket[] = []

afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate()
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

/** A server whose handler records peers and frames; by default it acks every frame. */
const start = async (overrides: Partial<SidecarServerOptions> = {}) => {
  const server = new SidecarServer({
    sessionName: SESSION,
    verifier: createHash('sha256').update(SECRET).digest('base64url'),
    host: '127.0.0.1',
    port: 0,
    maxPayload: 1024 * 1024,
    heartbeatMs: 60_000,
    highWaterMark: 1024 * 1024,
    logger: silentLogger,
    ...overrides,
  })
  servers.push(server)
  const peers: BridgePeer[] = []
  const closed: BridgePeer[] = []
  const frames: Array<{ peer: BridgePeer; frame: Frame<BridgeFrameHeader> }> = []
  const port = await server.listen({
    onpeer: (peer) => peers.push(peer),
    onframe: (peer, frame) => {
      frames.push({ peer, frame })
      peer.send({ t: 'ack', ch: frame.header.ch })
    },
    onpeerclose: (peer) => closed.push(peer),
    onbackpressure: () => undefined,
  })
  return { server, port, peers, closed, frames }
}

interface ClientOptions {
  session?: string
  authorization?: string | null
  protocols?: string[]
  autoPong?: boolean
}

const connect = (port: number, options: ClientOptions = {}) => {
  const headers: Record<string, string> = { 'x-ferry-session': options.session ?? SESSION }
  const authorization =
    options.authorization === undefined ? `Bearer ${SECRET}` : options.authorization
  if (authorization !== null) headers.authorization = authorization
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, options.protocols ?? [FRAME_PROTOCOL], {
    headers,
    autoPong: options.autoPong ?? true,
  })
  clients.push(ws)
  const received: string[] = []
  ws.on('message', (data) => received.push(data.toString()))
  ws.on('error', () => undefined)
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))
  )
  return { ws, received, closed }
}

/** Opens a connection and resolves once it is open, or rejects with the HTTP status. */
const open = (port: number, options: ClientOptions = {}) => {
  const client = connect(port, options)
  return new Promise<typeof client>((resolve, reject) => {
    client.ws.once('open', () => resolve(client))
    client.ws.once('unexpected-response', (_req, res) =>
      reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }))
    )
    client.ws.once('error', reject)
  })
}

const statusOf = async (port: number, options: ClientOptions) => {
  try {
    await open(port, options)
    return 'open'
  } catch (error) {
    return (error as { status?: number }).status ?? (error as Error).message
  }
}

describe('SidecarServer', () => {
  it('answers /healthz with 200 and other paths with 404', async () => {
    const { port } = await start()
    const health = await fetch(`http://127.0.0.1:${port}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.text()).toBe('ok')
    expect((await fetch(`http://127.0.0.1:${port}/healthz`, { method: 'HEAD' })).status).toBe(200)
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404)
    expect((await fetch(`http://127.0.0.1:${port}/healthz`, { method: 'POST' })).status).toBe(404)
  })

  it('refuses an upgrade for another session with 404', async () => {
    const { port, peers } = await start()
    expect(await statusOf(port, { session: 'sess-2' })).toBe(404)
    expect(await statusOf(port, { session: '' })).toBe(404)
    expect(peers).toEqual([])
  })

  it('refuses an upgrade without the right secret with 401', async () => {
    const { port, peers } = await start()
    expect(await statusOf(port, { authorization: null })).toBe(401)
    expect(await statusOf(port, { authorization: 'Bearer wrong' })).toBe(401)
    expect(await statusOf(port, { authorization: `Bearer ${SECRET}x` })).toBe(401)
    expect(await statusOf(port, { authorization: SECRET })).toBe(401)
    expect(await statusOf(port, { authorization: `Basic ${SECRET}` })).toBe(401)
    expect(peers).toEqual([])
  })

  it('refuses an upgrade that does not offer the ferry.v1 subprotocol', async () => {
    const { port, peers } = await start()
    expect(await statusOf(port, { protocols: [] })).toBe(400)
    expect(await statusOf(port, { protocols: ['ferry.v0'] })).toBe(400)
    expect(peers).toEqual([])
    const { ws } = await open(port, { protocols: ['ferry.v0', FRAME_PROTOCOL] })
    expect(ws.protocol).toBe(FRAME_PROTOCOL)
  })

  it('accepts the right upgrade and hands frames to the handler', async () => {
    const { port, peers, frames } = await start()
    const { ws, received } = await open(port)
    expect(ws.protocol).toBe(FRAME_PROTOCOL)
    const payload = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }, null, 2)
    ws.send(encodeFrame({ t: 'req', ch: 3 }, payload))
    await waitUntil(() => received.length === 1, 'the ack')
    expect(peers).toHaveLength(1)
    expect(frames).toEqual([{ peer: peers[0], frame: { header: { t: 'req', ch: 3 }, payload } }])
    expect(decodeSidecarFrame(received[0]!)).toEqual({
      header: { t: 'ack', ch: 3 },
      payload: undefined,
    })
  })

  it.each([
    ['a malformed frame', 'not a frame'],
    ['a sidecar frame', encodeFrame({ t: 'ack', ch: 1 })],
    ['a binary frame', Buffer.from(encodeFrame({ t: 'get', ch: 1 }))],
  ])('closes a connection that sends %s with 1008', async (_name, data) => {
    const { port, peers, closed, frames } = await start()
    const client = await open(port)
    client.ws.send(data)
    expect((await client.closed).code).toBe(1008)
    await waitUntil(() => closed.length === 1, 'the handler to see the close')
    expect(closed).toEqual(peers)
    expect(frames).toEqual([])
  })

  it('keeps two connections apart: each gets its own frames', async () => {
    const { port, peers, frames } = await start()
    const a = await open(port)
    const b = await open(port)
    a.ws.send(encodeFrame({ t: 'get', ch: 1 }))
    b.ws.send(encodeFrame({ t: 'get', ch: 2 }))
    a.ws.send(encodeFrame({ t: 'detach', ch: 11 }))
    await waitUntil(() => a.received.length === 2 && b.received.length === 1, 'the acks')
    expect(a.received.map((text) => decodeSidecarFrame(text)?.header)).toEqual([
      { t: 'ack', ch: 1 },
      { t: 'ack', ch: 11 },
    ])
    expect(b.received.map((text) => decodeSidecarFrame(text)?.header)).toEqual([
      { t: 'ack', ch: 2 },
    ])
    expect(peers).toHaveLength(2)
    expect(peers[0]!.id).not.toBe(peers[1]!.id)
    const peerOf = (ch: number) => frames.find((f) => f.frame.header.ch === ch)!.peer
    expect(peerOf(1)).toBe(peerOf(11))
    expect(peerOf(1)).not.toBe(peerOf(2))
  })

  it('tells the handler when a connection closes', async () => {
    const { port, peers, closed } = await start()
    const a = await open(port)
    await open(port)
    a.ws.close()
    await waitUntil(() => closed.length === 1, 'the close')
    expect(closed[0]).toBe(peers[0])
  })

  it('terminates a connection that does not answer pings, and keeps one that does', async () => {
    const { port, peers, closed } = await start({ heartbeatMs: 50 })
    const silent = await open(port, { autoPong: false })
    const lively = await open(port)
    const { code } = await silent.closed
    expect(code).toBe(1006)
    await waitUntil(() => closed.length === 1, 'the handler to see the close')
    expect(closed[0]).toBe(peers[0])
    expect(lively.ws.readyState).toBe(WebSocket.OPEN)
    // A full further heartbeat later it is still there.
    const pings = { count: 0 }
    lively.ws.on('ping', () => pings.count++)
    await waitUntil(() => pings.count >= 2, 'two more pings')
    expect(lively.ws.readyState).toBe(WebSocket.OPEN)
  })

  it('closes every connection with 1000 when it closes', async () => {
    const { server, port } = await start()
    const a = await open(port)
    const b = await open(port)
    await server.close()
    expect((await a.closed).code).toBe(1000)
    expect((await b.closed).code).toBe(1000)
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow()
  })

  it('sends nothing on a connection that is no longer open', async () => {
    const { port, peers, closed } = await start()
    const a = await open(port)
    a.ws.close()
    await waitUntil(() => closed.length === 1, 'the close')
    expect(() => peers[0]!.send({ t: 'ack', ch: 1 })).not.toThrow()
  })
})
