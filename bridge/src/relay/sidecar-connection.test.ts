/**
 * @module
 * Tests for one bridge → sidecar WebSocket: against a real sidecar started from
 * the bundle, and against a small `ws` server on 127.0.0.1 where the test needs
 * the other end to misbehave.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID, createHash } from 'node:crypto'
import { once } from 'node:events'
import { type AddressInfo, type Socket, createServer } from 'node:net'
import type { Readable } from 'node:stream'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type WebSocket, WebSocketServer } from 'ws'
import {
  type BridgeFrameHeader,
  type SidecarFrameHeader,
  FRAME_PROTOCOL,
  decodeBridgeFrame,
  encodeFrame,
} from '@ferry/shared'
import {
  type ChannelListener,
  type DialOptions,
  type SessionExit,
  DialError,
  SidecarConnection,
} from './sidecar-connection.ts'

const SIDECAR = fileURLToPath(new URL('../../../sidecar/dist/sidecar.mjs', import.meta.url))
const FIXTURE = fileURLToPath(
  new URL('../../../test/fixtures/conformance-server.ts', import.meta.url)
)

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** Polls `condition` every 10 ms, `tries` times at most (no clock: some tests mock Date.now). */
const until = async (condition: () => boolean, tries = 500) => {
  for (let i = 0; i < tries && !condition(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  expect(condition()).toBe(true)
}

// ---------------------------------------------------------------------------------------------
// A real sidecar from the bundle

interface RealSidecar {
  address: string
  sessionName: string
  secret: string
  child: ChildProcess
  exited: Promise<number | null>
}

const startSidecar = async (options: { heartbeat?: string } = {}): Promise<RealSidecar> => {
  const sessionName = 's'
  const secret = randomUUID()
  const child = spawn(
    process.execPath,
    [
      SIDECAR,
      '--session',
      sessionName,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--ready-fd',
      '3',
      '--log-level',
      'silent',
      ...(options.heartbeat ? ['--heartbeat', options.heartbeat] : []),
      '--',
      process.execPath,
      FIXTURE,
    ],
    {
      env: {
        ...process.env,
        FERRY_SIDECAR_VERIFIER: createHash('sha256').update(secret).digest('base64url'),
      },
      stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
    }
  )
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code))
  )
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await exited
    }
  })
  const lines = createInterface({ input: child.stdio[3] as Readable })
  const [line] = (await Promise.race([
    once(lines, 'line'),
    exited.then(() => {
      throw new Error('the sidecar exited before it was ready')
    }),
  ])) as [string]
  lines.close()
  const { port } = JSON.parse(line) as { port: number }
  return { address: `ws://127.0.0.1:${port}`, sessionName, secret, child, exited }
}

const dialOptions = (target: {
  address: string
  sessionName?: string
  secret?: string
}): DialOptions => ({
  address: target.address,
  sessionName: target.sessionName ?? 's',
  secret: target.secret ?? 'secret',
  timeoutMs: 2000,
  maxPayload: 1024 * 1024,
  heartbeatMs: 15_000,
})

const dial = async (options: DialOptions) => {
  const connection = await SidecarConnection.dial(options)
  cleanups.push(() => connection.close())
  return connection
}

const dialError = async (options: DialOptions): Promise<DialError> => {
  const error = await SidecarConnection.dial(options).then(
    (connection) => {
      connection.close()
      return undefined
    },
    (e: unknown) => e
  )
  expect(error).toBeInstanceOf(DialError)
  return error as DialError
}

// ---------------------------------------------------------------------------------------------
// A WebSocket server the test controls

interface FakeSidecar {
  address: string
  /** Server side of each accepted connection, in order. */
  sockets: WebSocket[]
  /** Frames received from the bridge, decoded. */
  frames: { header: BridgeFrameHeader; payload: string | undefined }[]
  /** Upgrade request headers, per connection. */
  upgrades: Record<string, string | string[] | undefined>[]
  send(header: SidecarFrameHeader, payload?: string, socket?: number): void
}

const fakeSidecar = async (
  options: { onconnection?: (ws: WebSocket) => void } = {}
): Promise<FakeSidecar> => {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (protocols) => (protocols.has(FRAME_PROTOCOL) ? FRAME_PROTOCOL : false),
  })
  await once(wss, 'listening')
  const fake: FakeSidecar = {
    address: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    sockets: [],
    frames: [],
    upgrades: [],
    send: (header, payload, socket = 0) => fake.sockets[socket]!.send(encodeFrame(header, payload)),
  }
  wss.on('connection', (ws, req) => {
    fake.sockets.push(ws)
    fake.upgrades.push(req.headers)
    ws.on('message', (data) => {
      const frame = decodeBridgeFrame(data.toString())
      if (frame) fake.frames.push(frame)
    })
    options.onconnection?.(ws)
  })
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate()
        wss.close(() => resolve())
      })
  )
  return fake
}

/** A listener that records everything it hears. */
const recorder = () => {
  const heard: { kind: string; args: unknown[] }[] = []
  const listener: Required<ChannelListener> & { heard: typeof heard } = {
    heard,
    onevent: (...args) => void heard.push({ kind: 'event', args }),
    onend: (...args) => void heard.push({ kind: 'end', args }),
    onerror: (...args) => void heard.push({ kind: 'error', args }),
    ongap: (...args) => void heard.push({ kind: 'gap', args }),
    onack: (...args) => void heard.push({ kind: 'ack', args }),
    onlost: (...args) => void heard.push({ kind: 'lost', args }),
  }
  return listener
}

const REQUEST = (id: number, method = 'ping', params?: unknown) =>
  JSON.stringify({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) })

const INITIALIZE = REQUEST(1, 'initialize', {
  protocolVersion: '2025-11-25',
  capabilities: {},
  clientInfo: { name: 'relay-test', version: '1' },
})

// ---------------------------------------------------------------------------------------------

describe('SidecarConnection.dial against a real sidecar', () => {
  it('connects with the session name and secret, and relays a request to the server', async () => {
    const sidecar = await startSidecar()
    const connection = await dial(dialOptions(sidecar))
    expect(connection.isOpen).toBe(true)
    expect(connection.sessionName).toBe('s')
    const listener = recorder()
    const ch = connection.open({ t: 'req' }, INITIALIZE, listener)
    expect(connection.openChannels).toBe(1)
    await until(() => listener.heard.length > 0)
    expect(listener.heard).toHaveLength(1)
    const [id, payload, fin] = listener.heard[0]!.args as [string, string, boolean]
    expect(listener.heard[0]!.kind).toBe('event')
    expect(id).toBe('rMQ.1')
    expect(fin).toBe(true)
    expect(JSON.parse(payload)).toMatchObject({
      jsonrpc: '2.0',
      id: 1,
      result: { protocolVersion: '2025-11-25' },
    })
    // A response ends the channel on its own.
    expect(connection.openChannels).toBe(0)
    expect(ch).toBe(1)
  })

  it('streams events before the response that ends the channel', async () => {
    const sidecar = await startSidecar()
    const connection = await dial(dialOptions(sidecar))
    const init = recorder()
    connection.open({ t: 'req' }, INITIALIZE, init)
    await until(() => init.heard.length === 1)
    const listener = recorder()
    connection.open(
      { t: 'req' },
      REQUEST(2, 'tools/call', {
        name: 'test_tool_with_progress',
        arguments: {},
        _meta: { progressToken: 7 },
      }),
      listener
    )
    await until(() => listener.heard.some((h) => h.args[2] === true))
    const events = listener.heard.map((h) => h.args as [string, string, boolean])
    expect(listener.heard.every((h) => h.kind === 'event')).toBe(true)
    expect(events.map(([id]) => id)).toEqual(['rMg.1', 'rMg.2', 'rMg.3', 'rMg.4'])
    expect(events.map(([, , fin]) => fin)).toEqual([false, false, false, true])
    expect(JSON.parse(events[0]![1])).toMatchObject({
      method: 'notifications/progress',
      params: { progressToken: 7 },
    })
  })

  it('a wrong secret is refused as gone (401)', async () => {
    const sidecar = await startSidecar()
    const error = await dialError(dialOptions({ ...sidecar, secret: 'wrong' }))
    expect(error.gone).toBe(true)
    expect(error.message).toContain('HTTP 401')
  })

  it('another session name is refused as gone (404)', async () => {
    const sidecar = await startSidecar()
    const error = await dialError(dialOptions({ ...sidecar, sessionName: 'other' }))
    expect(error.gone).toBe(true)
    expect(error.message).toContain('HTTP 404')
  })

  it('bye is acknowledged, then the sidecar says the session is over and closes', async () => {
    const sidecar = await startSidecar()
    const connection = await dial(dialOptions(sidecar))
    const closed = new Promise<SessionExit | undefined>((resolve) => (connection.onclose = resolve))
    const bye = recorder()
    connection.open({ t: 'bye' }, undefined, bye)
    expect(await closed).toMatchObject({ reason: 'deleted' })
    expect(bye.heard[0]!.kind).toBe('ack')
    expect(connection.isOpen).toBe(false)
    expect(await sidecar.exited).toBe(0)
  })

  it('survives longer than the watchdog while the sidecar pings', async () => {
    // 200 ms rather than less: the sidecar drops a client whose pong misses one interval,
    // which a loaded machine can cause at very short intervals.
    const sidecar = await startSidecar({ heartbeat: '200ms' })
    const connection = await dial({ ...dialOptions(sidecar), heartbeatMs: 200 })
    const onclose = vi.fn()
    connection.onclose = onclose
    // Without pings the watchdog would fire after 2 × 200 + 1000 ms of silence.
    await new Promise((resolve) => setTimeout(resolve, 2000))
    expect(onclose).not.toHaveBeenCalled()
    expect(connection.isOpen).toBe(true)
  })
})

describe('SidecarConnection.dial failures', () => {
  it('a refused port is gone', async () => {
    const server = createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as AddressInfo
    await new Promise((resolve) => server.close(resolve))
    const error = await dialError(dialOptions({ address: `ws://127.0.0.1:${port}` }))
    expect(error.gone).toBe(true)
    expect(error.message).toContain('ECONNREFUSED')
  })

  /** A plain TCP server on 127.0.0.1 answering each connection with `answer`, or nothing. */
  const rawServer = async (answer?: string) => {
    const sockets: Socket[] = []
    const server = createServer((socket) => {
      sockets.push(socket)
      socket.on('error', () => undefined)
      if (answer) socket.end(answer)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resolve())
        })
    )
    return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  it('a server error on the upgrade is not gone', async () => {
    const address = await rawServer(
      'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
    )
    const error = await dialError(dialOptions({ address }))
    expect(error.gone).toBe(false)
    expect(error.message).toContain('HTTP 503')
  })

  it('a server that never answers the upgrade times out, not gone', async () => {
    const address = await rawServer()
    const error = await dialError({ ...dialOptions({ address }), timeoutMs: 100 })
    expect(error.gone).toBe(false)
  })

  it('sends the session name, the secret and the frame protocol on the upgrade', async () => {
    const fake = await fakeSidecar()
    const connection = await dial(
      dialOptions({ address: fake.address, sessionName: 'ferry-abc', secret: 'sekrit' })
    )
    expect(connection.isOpen).toBe(true)
    expect(fake.upgrades[0]).toMatchObject({
      'x-ferry-session': 'ferry-abc',
      authorization: 'Bearer sekrit',
      'sec-websocket-protocol': FRAME_PROTOCOL,
    })
  })
})

describe('SidecarConnection channels', () => {
  const connected = async () => {
    const fake = await fakeSidecar()
    const connection = await dial(dialOptions(fake))
    await until(() => fake.sockets.length === 1)
    return { fake, connection }
  }

  it('sends the first frame with the channel number and payload', async () => {
    const { fake, connection } = await connected()
    const a = connection.open({ t: 'req', tp: '00-abc-def-01' }, '{"id":1}', recorder())
    const b = connection.open({ t: 'get', after: '_.3' }, undefined, recorder())
    const c = connection.open({ t: 'msg' }, '{"n":1}', recorder())
    const d = connection.open({ t: 'bye' }, undefined, recorder())
    expect([a, b, c, d]).toEqual([1, 2, 3, 4])
    await until(() => fake.frames.length === 4)
    expect(fake.frames).toEqual([
      { header: { t: 'req', ch: 1, tp: '00-abc-def-01' }, payload: '{"id":1}' },
      { header: { t: 'get', ch: 2, after: '_.3' }, payload: undefined },
      { header: { t: 'msg', ch: 3 }, payload: '{"n":1}' },
      { header: { t: 'bye', ch: 4 }, payload: undefined },
    ])
    expect(connection.openChannels).toBe(4)
  })

  it('routes every frame kind to its channel', async () => {
    const { fake, connection } = await connected()
    const one = recorder()
    const two = recorder()
    const three = recorder()
    const four = recorder()
    connection.open({ t: 'req' }, '{}', one)
    connection.open({ t: 'get' }, undefined, two)
    connection.open({ t: 'req' }, '{}', three)
    connection.open({ t: 'msg' }, '{}', four)
    await until(() => fake.frames.length === 4)
    fake.send({ t: 'ev', ch: 1, id: 'r.1' }, '{"a":1}')
    fake.send({ t: 'ack', ch: 2 })
    fake.send({ t: 'gap', ch: 2, missed: 5 })
    fake.send({ t: 'ev', ch: 2, id: '_.9' }, '{"b":2}')
    fake.send({ t: 'ev', ch: 1, id: 'r.2', fin: 1 }, '{"c":3}')
    fake.send({ t: 'err', ch: 3, code: 'duplicate_id', message: 'used' })
    fake.send({ t: 'end', ch: 2, reason: 'takeover' })
    fake.send({ t: 'ack', ch: 4 })
    // Frames for channels nobody listens on are ignored.
    fake.send({ t: 'ev', ch: 1, id: 'r.3' }, '{"late":1}')
    fake.send({ t: 'ev', ch: 99, id: 'x.1' }, '{}')
    await until(() => four.heard.length === 1)
    expect(one.heard).toEqual([
      { kind: 'event', args: ['r.1', '{"a":1}', false, { t: 'ev', ch: 1, id: 'r.1' }] },
      { kind: 'event', args: ['r.2', '{"c":3}', true, { t: 'ev', ch: 1, id: 'r.2', fin: 1 }] },
    ])
    expect(two.heard).toEqual([
      { kind: 'ack', args: [] },
      { kind: 'gap', args: [5] },
      { kind: 'event', args: ['_.9', '{"b":2}', false, { t: 'ev', ch: 2, id: '_.9' }] },
      { kind: 'end', args: ['takeover'] },
    ])
    expect(three.heard).toEqual([{ kind: 'error', args: ['duplicate_id', 'used'] }])
    expect(four.heard).toEqual([{ kind: 'ack', args: [] }])
    // fin, end and err close their channels; ack leaves the channel open until released.
    expect(connection.openChannels).toBe(1)
    connection.release(4, false)
    expect(connection.openChannels).toBe(0)
  })

  it('release tells the sidecar only when asked, once', async () => {
    const { fake, connection } = await connected()
    const a = connection.open({ t: 'req' }, '{}', recorder())
    const b = connection.open({ t: 'req' }, '{}', recorder())
    connection.release(a, true)
    connection.release(a, true)
    connection.release(b, false)
    connection.release(42, true)
    connection.open({ t: 'bye' }, undefined, recorder())
    await until(() => fake.frames.some((f) => f.header.t === 'bye'))
    expect(fake.frames.map((f) => f.header)).toEqual([
      { t: 'req', ch: 1 },
      { t: 'req', ch: 2 },
      { t: 'detach', ch: 1 },
      { t: 'bye', ch: 3 },
    ])
  })

  it('a released channel hears nothing more', async () => {
    const { fake, connection } = await connected()
    const listener = recorder()
    connection.open({ t: 'req' }, '{}', listener)
    connection.release(1, true)
    fake.send({ t: 'ev', ch: 1, id: 'r.1', fin: 1 }, '{}')
    const probe = recorder()
    connection.open({ t: 'msg' }, '{}', probe)
    fake.send({ t: 'ack', ch: 2 })
    await until(() => probe.heard.length === 1)
    expect(listener.heard).toEqual([])
  })

  it('when the socket drops, every open channel learns it at once, then onclose', async () => {
    const { fake, connection } = await connected()
    const listeners = [recorder(), recorder(), recorder()]
    connection.open({ t: 'req' }, '{}', listeners[0]!)
    connection.open({ t: 'get' }, undefined, listeners[1]!)
    connection.open({ t: 'msg' }, '{}', listeners[2]!)
    await until(() => fake.frames.length === 3)
    let lostBeforeClose = -1
    const closed = new Promise<SessionExit | undefined>((resolve) => {
      connection.onclose = (exit) => {
        lostBeforeClose = listeners.filter((l) => l.heard.length > 0).length
        resolve(exit)
      }
    })
    fake.sockets[0]!.terminate()
    expect(await closed).toBeUndefined()
    expect(lostBeforeClose).toBe(3)
    for (const listener of listeners)
      expect(listener.heard).toEqual([{ kind: 'lost', args: [undefined] }])
    expect(connection.isOpen).toBe(false)
    expect(connection.openChannels).toBe(0)
  })

  it('a channel opened after the drop is told asynchronously, never left waiting', async () => {
    const { fake, connection } = await connected()
    const closed = new Promise((resolve) => (connection.onclose = resolve))
    fake.sockets[0]!.terminate()
    await closed
    const late = recorder()
    connection.open({ t: 'req' }, '{}', late)
    expect(late.heard).toEqual([])
    await Promise.resolve()
    expect(late.heard).toEqual([{ kind: 'lost', args: [undefined] }])
    expect(connection.openChannels).toBe(0)
  })

  it('an exit frame tells every channel and onclose why the session ended', async () => {
    const { fake, connection } = await connected()
    const listeners = [recorder(), recorder()]
    connection.open({ t: 'req' }, '{}', listeners[0]!)
    connection.open({ t: 'get' }, undefined, listeners[1]!)
    await until(() => fake.frames.length === 2)
    const closed = new Promise<SessionExit | undefined>((resolve) => (connection.onclose = resolve))
    fake.send({ t: 'exit', reason: 'server_exit', code: 3, signal: null })
    fake.sockets[0]!.close(1000, 'session over')
    const exit = { reason: 'server_exit', code: 3, signal: null }
    expect(await closed).toEqual(exit)
    for (const listener of listeners)
      expect(listener.heard).toEqual([{ kind: 'lost', args: [exit] }])
    const late = recorder()
    connection.open({ t: 'req' }, '{}', late)
    await Promise.resolve()
    expect(late.heard).toEqual([{ kind: 'lost', args: [exit] }])
  })

  it("reports the sidecar's evictions and the session's age for metrics", async () => {
    const { fake, connection } = await connected()
    const evicted: number[] = []
    const exits: SessionExit[] = []
    connection.onevicted = (count) => void evicted.push(count)
    connection.onexit = (exit) => void exits.push(exit)
    connection.open({ t: 'get' }, undefined, recorder())
    await until(() => fake.frames.length === 1)
    fake.send({ t: 'ev', ch: 1, id: '_.4', evicted: 3 }, '{}')
    // Also on a frame for a channel nobody listens to any more.
    fake.send({ t: 'ev', ch: 7, id: '_.5', evicted: 1 }, '{}')
    fake.send({ t: 'exit', reason: 'idle', ageMs: 60_000, evicted: 2 })
    await until(() => exits.length === 1)
    expect(evicted).toEqual([3, 1, 2])
    expect(exits).toEqual([{ reason: 'idle', ageMs: 60_000 }])
  })

  it('a malformed frame closes the connection and loses its channels', async () => {
    const { fake, connection } = await connected()
    const listener = recorder()
    connection.open({ t: 'req' }, '{}', listener)
    const closed = new Promise((resolve) => (connection.onclose = resolve))
    fake.sockets[0]!.send('{"t":"nonsense"}')
    await closed
    expect(listener.heard).toEqual([{ kind: 'lost', args: [undefined] }])
  })

  it('a silent sidecar (no pings) is dropped by the watchdog', async () => {
    const fake = await fakeSidecar()
    const connection = await dial({ ...dialOptions(fake), heartbeatMs: 50 })
    const listener = recorder()
    connection.open({ t: 'get' }, undefined, listener)
    const closed = new Promise<string>((resolve) => (connection.onclose = () => resolve('closed')))
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('still open'), 5000))
    expect(await Promise.race([closed, timeout])).toBe('closed')
    expect(listener.heard).toEqual([{ kind: 'lost', args: [undefined] }])
  })

  it('close() closes the socket normally', async () => {
    const fake = await fakeSidecar()
    const connection = await dial(dialOptions(fake))
    await until(() => fake.sockets.length === 1)
    const serverClosed = once(fake.sockets[0]!, 'close') as Promise<[number, Buffer]>
    connection.close()
    const [code, reason] = await serverClosed
    expect(code).toBe(1000)
    expect(reason.toString()).toBe('idle')
  })
})

describe('SidecarConnection idleness', () => {
  it('is never idle with a channel open, and counts from the last release', async () => {
    const fake = await fakeSidecar()
    const connection = await dial(dialOptions(fake))
    const now = Date.now()
    expect(connection.idleFor(now + 5000)).toBeGreaterThanOrEqual(4000)
    const ch = connection.open({ t: 'get' }, undefined, recorder())
    expect(connection.idleFor(now + 60_000)).toBe(0)
    connection.release(ch, true)
    expect(connection.idleFor(Date.now())).toBeLessThan(1000)
  })

  it('a channel the sidecar ends (fin, end, err) counts as use, like a released one', async () => {
    const fake = await fakeSidecar()
    const connection = await dial(dialOptions(fake))
    await until(() => fake.sockets.length === 1)
    const ends: [SidecarFrameHeader, string | undefined][] = [
      [{ t: 'ev', ch: 0, id: 'r.1', fin: 1 }, '{}'],
      [{ t: 'end', ch: 0, reason: 'complete' }, undefined],
      [{ t: 'err', ch: 0, code: 'bad_message', message: 'no' }, undefined],
    ]
    const idleAfter: Record<string, number> = {}
    for (const [header, payload] of ends) {
      const listener = recorder()
      const ch = connection.open({ t: 'req' }, '{}', listener)
      await until(() => fake.frames.some((f) => f.header.ch === ch))
      // The request runs for two minutes; then the sidecar ends the channel.
      const later = Date.now() + 120_000
      const clock = vi.spyOn(Date, 'now').mockReturnValue(later)
      try {
        fake.send({ ...header, ch } as SidecarFrameHeader, payload)
        await until(() => listener.heard.length === 1)
      } finally {
        clock.mockRestore()
      }
      expect(connection.openChannels).toBe(0)
      idleAfter[header.t] = connection.idleFor(later)
    }
    // Just used: a pool must not close it as idle right away.
    expect(idleAfter).toEqual({ ev: 0, end: 0, err: 0 })
  })
})
