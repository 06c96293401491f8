/**
 * @module
 * Tests for the per-replica connection pool: one connection per session, shared
 * dials, idle closing, tombstones for ended sessions. Real sidecars from the
 * bundle where they can do, a `ws` server on 127.0.0.1 where the other end must
 * misbehave.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID, createHash } from 'node:crypto'
import { once } from 'node:events'
import { type AddressInfo, createServer } from 'node:net'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type WebSocket, WebSocketServer } from 'ws'
import { FRAME_PROTOCOL } from '@ferry/shared'
import {
  ConnectionPool,
  type ConnectionPoolOptions,
  type SessionTarget,
} from './connection-pool.ts'
import {
  type ChannelListener,
  type DialOptions,
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

/** Polls `condition` every 10 ms, `tries` times at most. */
const until = async (condition: () => boolean, tries = 500) => {
  for (let i = 0; i < tries && !condition(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  expect(condition()).toBe(true)
}

interface RealSidecar extends SessionTarget {
  /** The secret the sidecar was started with. */
  secretText: string
  child: ChildProcess
  exited: Promise<number | null>
}

/** `node sidecar/dist/sidecar.mjs … -- node conformance-server.ts`, ready on 127.0.0.1. */
const startSidecar = async (sessionName = 's'): Promise<RealSidecar> => {
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
  return {
    address: `ws://127.0.0.1:${port}`,
    sessionName,
    secret: async () => secret,
    secretText: secret,
    child,
    exited,
  }
}

/** A `ws` server speaking the frame protocol and nothing else. */
const fakeSidecar = async (onconnection?: (ws: WebSocket) => void) => {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (protocols) => (protocols.has(FRAME_PROTOCOL) ? FRAME_PROTOCOL : false),
  })
  await once(wss, 'listening')
  const sockets: WebSocket[] = []
  wss.on('connection', (ws) => {
    sockets.push(ws)
    onconnection?.(ws)
  })
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate()
        wss.close(() => resolve())
      })
  )
  return { address: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, sockets }
}

const freePort = async () => {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A pool whose dials go to the real `SidecarConnection.dial`, counted. */
const countingPool = (options: Partial<ConnectionPoolOptions> = {}) => {
  const dial = vi.fn((dialOptions: DialOptions) => SidecarConnection.dial(dialOptions))
  const pool = new ConnectionPool({
    dialTimeoutMs: 2000,
    idleCloseMs: 60_000,
    maxPayload: 1024 * 1024,
    heartbeatMs: 15_000,
    dial,
    ...options,
  })
  cleanups.push(() => pool.close())
  return { pool, dial }
}

const listener = (overrides: Partial<ChannelListener> = {}): ChannelListener => ({
  onevent: () => undefined,
  onend: () => undefined,
  onerror: () => undefined,
  onlost: () => undefined,
  ...overrides,
})

describe('ConnectionPool', () => {
  it('shares one dial among concurrent gets for a session', async () => {
    const sidecar = await startSidecar()
    const { pool, dial } = countingPool()
    const connections = await Promise.all(Array.from({ length: 8 }, () => pool.get(sidecar)))
    expect(dial).toHaveBeenCalledTimes(1)
    expect(dial.mock.calls[0]![0]).toMatchObject({
      address: sidecar.address,
      sessionName: 's',
      secret: sidecar.secretText,
      timeoutMs: 2000,
      maxPayload: 1024 * 1024,
      heartbeatMs: 15_000,
    })
    expect(new Set(connections).size).toBe(1)
    expect(connections[0]!.isOpen).toBe(true)
    expect(pool.size).toBe(1)
    // Later gets reuse it too.
    expect(await pool.get(sidecar)).toBe(connections[0])
    expect(dial).toHaveBeenCalledTimes(1)
  })

  it('asks for the secret only when it dials', async () => {
    const sidecar = await startSidecar()
    const { pool } = countingPool()
    const secret = vi.fn(sidecar.secret)
    const target = { ...sidecar, secret }
    await Promise.all([pool.get(target), pool.get(target), pool.get(target)])
    await pool.get(target)
    expect(secret).toHaveBeenCalledTimes(1)
  })

  it('keeps one connection per session', async () => {
    const a = await fakeSidecar()
    const b = await fakeSidecar()
    const { pool, dial } = countingPool()
    const [ca, cb, ca2] = await Promise.all([
      pool.get({ sessionName: 'a', address: a.address, secret: async () => 'x' }),
      pool.get({ sessionName: 'b', address: b.address, secret: async () => 'x' }),
      pool.get({ sessionName: 'a', address: a.address, secret: async () => 'x' }),
    ])
    expect(ca).toBe(ca2)
    expect(ca).not.toBe(cb)
    expect(dial).toHaveBeenCalledTimes(2)
    expect(pool.size).toBe(2)
  })

  it('closes connections left idle for idleCloseMs, and dials again when needed', async () => {
    const sidecar = await startSidecar()
    const { pool, dial } = countingPool({ idleCloseMs: 150 })
    const closes: [string, boolean][] = []
    pool.onclose = (name, ended) => void closes.push([name, ended])
    const first = await pool.get(sidecar)
    await until(() => closes.length === 1)
    expect(first.isOpen).toBe(false)
    expect(pool.size).toBe(0)
    expect(closes).toEqual([['s', false]])
    expect(pool.isEnded('s')).toBe(false)
    const second = await pool.get(sidecar)
    expect(second).not.toBe(first)
    expect(second.isOpen).toBe(true)
    expect(dial).toHaveBeenCalledTimes(2)
  })

  it('never closes a connection with an open channel as idle', async () => {
    const sidecar = await startSidecar()
    const { pool } = countingPool({ idleCloseMs: 100 })
    const connection = await pool.get(sidecar)
    let acked = false
    // The standalone GET stream stays open until released.
    const ch = connection.open({ t: 'get' }, undefined, listener({ onack: () => (acked = true) }))
    await until(() => acked)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(connection.isOpen).toBe(true)
    connection.release(ch, true)
    await until(() => !connection.isOpen)
    expect(pool.size).toBe(0)
  })

  it('an exit frame marks the session ended: later gets reject as gone without dialling', async () => {
    const sidecar = await startSidecar()
    const { pool, dial } = countingPool()
    const closes: [string, boolean][] = []
    pool.onclose = (name, ended) => void closes.push([name, ended])
    const connection = await pool.get(sidecar)
    connection.open({ t: 'bye' }, undefined, listener())
    await until(() => closes.length === 1)
    expect(closes).toEqual([['s', true]])
    expect(pool.isEnded('s')).toBe(true)
    expect(pool.size).toBe(0)
    const error = await pool.get(sidecar).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DialError)
    expect((error as DialError).gone).toBe(true)
    expect(dial).toHaveBeenCalledTimes(1)
    expect(await sidecar.exited).toBe(0)
  })

  it('a socket that drops without exit is forgotten, not ended: the next get dials again', async () => {
    const fake = await fakeSidecar()
    const { pool, dial } = countingPool()
    const closes: [string, boolean][] = []
    pool.onclose = (name, ended) => void closes.push([name, ended])
    const target = { sessionName: 'f', address: fake.address, secret: async () => 'x' }
    const first = await pool.get(target)
    await until(() => fake.sockets.length === 1)
    fake.sockets[0]!.terminate()
    await until(() => closes.length === 1)
    expect(closes).toEqual([['f', false]])
    expect(pool.isEnded('f')).toBe(false)
    const second = await pool.get(target)
    expect(second).not.toBe(first)
    expect(dial).toHaveBeenCalledTimes(2)
  })

  it('a dial that finds the session gone marks it ended', async () => {
    const { pool, dial } = countingPool()
    const target = {
      sessionName: 'g',
      address: `ws://127.0.0.1:${await freePort()}`,
      secret: async () => 'x',
    }
    const first = await pool.get(target).catch((e: unknown) => e)
    expect(first).toBeInstanceOf(DialError)
    expect((first as DialError).gone).toBe(true)
    expect(pool.isEnded('g')).toBe(true)
    expect(pool.size).toBe(0)
    await expect(pool.get(target)).rejects.toBeInstanceOf(DialError)
    expect(dial).toHaveBeenCalledTimes(1)
  })

  it('a dial refused by a real sidecar with the wrong secret is gone too', async () => {
    const sidecar = await startSidecar()
    const { pool } = countingPool()
    const error = await pool
      .get({ ...sidecar, secret: async () => 'wrong' })
      .catch((e: unknown) => e)
    expect((error as DialError).gone).toBe(true)
    expect(pool.isEnded('s')).toBe(true)
  })

  it('a dial that fails for another reason is retried by the next get', async () => {
    const { pool, dial } = countingPool()
    const failing = vi.fn(async () => {
      throw new DialError('cannot reach the sidecar: ETIMEDOUT', false)
    })
    dial.mockImplementation(failing)
    const target = { sessionName: 't', address: 'ws://127.0.0.1:1', secret: async () => 'x' }
    await expect(pool.get(target)).rejects.toThrow('ETIMEDOUT')
    expect(pool.isEnded('t')).toBe(false)
    expect(pool.size).toBe(0)
    await expect(pool.get(target)).rejects.toThrow('ETIMEDOUT')
    expect(dial).toHaveBeenCalledTimes(2)
  })

  it('markEnded remembers a bounded number of sessions, oldest forgotten first', () => {
    const { pool } = countingPool({ tombstones: 2 })
    pool.markEnded('a')
    pool.markEnded('b')
    pool.markEnded('a')
    expect(pool.isEnded('a') && pool.isEnded('b')).toBe(true)
    pool.markEnded('c')
    expect(pool.isEnded('a')).toBe(false)
    expect(pool.isEnded('b') && pool.isEnded('c')).toBe(true)
  })

  it('close() closes every pooled connection and leaves the sessions running', async () => {
    const sidecar = await startSidecar()
    const { pool } = countingPool()
    const connection = await pool.get(sidecar)
    await pool.close()
    await until(() => !connection.isOpen)
    expect(pool.size).toBe(0)
    // The session is still there for another replica (or a new pool).
    const other = countingPool().pool
    const again = await other.get(sidecar)
    expect(again.isOpen).toBe(true)
    expect(sidecar.child.exitCode).toBeNull()
  })

  it('never hands out a connection that is already closing', async () => {
    // The sidecar side stops reading, so the idle close's handshake stays pending.
    const fake = await fakeSidecar((ws) => ws.pause())
    const { pool } = countingPool({ idleCloseMs: 100 })
    const target = { sessionName: 'c', address: fake.address, secret: async () => 'x' }
    const first = await pool.get(target)
    await until(() => !first.isOpen)
    // A request arriving now must get a working connection, not one that loses it at once.
    const next = await pool.get(target)
    expect(next.isOpen).toBe(true)
    let lost = false
    next.open(
      { t: 'req' },
      '{"jsonrpc":"2.0","id":1,"method":"ping"}',
      listener({ onlost: () => (lost = true) })
    )
    await Promise.resolve()
    expect(lost).toBe(false)
  })
})
