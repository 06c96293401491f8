/**
 * @module
 * Tests for the local runtime: real sidecars from the bundle, running the
 * conformance fixture, as child processes on 127.0.0.1, in both sidecar modes
 * (a shared sidecar host, and a dedicated sidecar per session).
 */
import type { ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { CatalogSchema, type ServerConfig } from '@ferry/shared'
import { DialError, SidecarConnection } from '../relay/sidecar-connection.ts'
import { newSessionName } from '../session/token.ts'
import { LocalRuntime } from './local-runtime.ts'
import { type WorkloadSpec, WorkloadStartError } from './runtime.ts'

const FIXTURE = fileURLToPath(
  new URL('../../../test/fixtures/conformance-server.ts', import.meta.url)
)

const serverConfig = (server: Record<string, unknown> = {}): ServerConfig =>
  CatalogSchema.parse({
    servers: { conf: { runtime: 'local', command: process.execPath, args: [FIXTURE], ...server } },
  }).servers.conf!

const runtimes: LocalRuntime[] = []
const newRuntime = (options: { nodePath?: string; sidecarPath?: string } = {}) => {
  const runtime = new LocalRuntime({
    heartbeatMs: 15_000,
    maxPayload: 1024 * 1024,
    logLevel: 'silent',
    ...options,
  })
  runtimes.push(runtime)
  return runtime
}
const connections: SidecarConnection[] = []

afterEach(async () => {
  for (const connection of connections.splice(0)) connection.close()
  for (const runtime of runtimes.splice(0)) await runtime.stopAll()
})

const spec = (server: Record<string, unknown> = {}): WorkloadSpec => ({
  sessionName: newSessionName(),
  serverName: 'conf',
  server: serverConfig(server),
  secret: randomUUID(),
})

/** The process relaying `sessionName` (its sidecar, or the host): the runtime's own table. */
const relayOf = (runtime: LocalRuntime, sessionName: string) =>
  (runtime as unknown as { children: Map<string, ChildProcess> }).children.get(sessionName)

/** The body of a sidecar's `/healthz`, reached over TCP or a Unix socket. */
const healthz = (target: { socketPath: string } | { host: string; port: number }) =>
  new Promise<string>((resolve, reject) => {
    const req = httpRequest({ ...target, path: '/healthz' }, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => (body += chunk.toString()))
      res.on('end', () => resolve(`${res.statusCode === 200 ? '' : res.statusCode}${body}`))
    })
    req.on('error', reject)
    req.end()
  })

const isAlive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

/** Pids of live processes whose command line mentions `text` (Linux /proc). */
const processesWith = (text: string): number[] => {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // Zombies are gone for every purpose but their parent's bookkeeping.
      if (cmdline.includes(text) && !/^\d+ \(.*\) Z/.test(stat)) pids.push(Number(entry))
    } catch {
      // exited while we looked
    }
  }
  return pids
}

const until = async (condition: () => boolean, tries = 500) => {
  for (let i = 0; i < tries && !condition(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  expect(condition()).toBe(true)
}

const dial = async (address: string, sessionName: string, secret: string) => {
  const connection = await SidecarConnection.dial({
    address,
    sessionName,
    secret,
    timeoutMs: 2000,
    maxPayload: 1024 * 1024,
    heartbeatMs: 15_000,
  })
  connections.push(connection)
  return connection
}

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-11-25',
    capabilities: {},
    clientInfo: { name: 't', version: '1' },
  },
}

/** Ends the session the way a bridge's DELETE does. */
const bye = (connection: SidecarConnection) =>
  connection.open({ t: 'bye' }, undefined, {
    onevent: () => undefined,
    onend: () => undefined,
    onerror: () => undefined,
    onlost: () => undefined,
  })

/** Sends one request over a fresh channel and resolves with the final payload. */
const request = (connection: SidecarConnection, body: unknown) =>
  new Promise<Record<string, unknown>>((resolve, reject) => {
    connection.open({ t: 'req' }, JSON.stringify(body), {
      onevent: (_id, payload, fin) => {
        if (fin) resolve(JSON.parse(payload) as Record<string, unknown>)
      },
      onend: (reason) => reject(new Error(`ended: ${reason}`)),
      onerror: (code, message) => reject(new Error(`${code}: ${message}`)),
      onlost: () => reject(new Error('lost')),
    })
  })

const startError = async (promise: Promise<unknown>): Promise<WorkloadStartError> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e
  )
  expect(error).toBeInstanceOf(WorkloadStartError)
  return error as WorkloadStartError
}

describe.each(['shared', 'dedicated'] as const)('LocalRuntime, %s sidecar', (mode) => {
  /** A server spec in this mode, tagged so its processes can be found. */
  const tagged = (server: Record<string, unknown> = {}) => {
    const tag = `ferry-tag-${randomUUID()}`
    return { tag, workload: spec({ args: [FIXTURE, tag], ...server, sidecar: mode }) }
  }

  it('starts a sidecar that serves the session with its secret', async () => {
    const runtime = newRuntime()
    expect(runtime.kind).toBe('local')
    const { workload } = tagged()
    const started = await runtime.start(workload, new AbortController().signal)
    expect(runtime.activeSessions()).toBe(1)
    if (mode === 'shared') {
      // A Unix socket in a directory only this user may enter.
      const socket = /^ws\+unix:\/\/(\/.+\/sidecars\.sock)$/.exec(started.address)?.[1]
      expect(socket).toBeDefined()
      expect(statSync(dirname(socket!)).mode & 0o777).toBe(0o700)
      expect(await healthz({ socketPath: socket! })).toBe('ok')
    } else {
      const port = /^ws:\/\/127\.0\.0\.1:(\d+)$/.exec(started.address)?.[1]
      expect(port).toBeDefined()
      expect(await healthz({ host: '127.0.0.1', port: Number(port) })).toBe('ok')
    }
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    const response = await request(connection, initialize)
    expect(response.result).toMatchObject({ serverInfo: { name: 'ferry-conformance-fixture' } })
    // Only this session's secret opens it.
    const refused = await SidecarConnection.dial({
      address: started.address,
      sessionName: workload.sessionName,
      secret: 'not-it',
      timeoutMs: 2000,
      maxPayload: 1024,
      heartbeatMs: 15_000,
    }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(DialError)
  })

  it("passes the server's env, and never the sidecar secret, to the MCP server", async () => {
    const runtime = newRuntime()
    const { workload } = tagged({ env: { FERRY_TEST_MARKER: 'yes' }, inheritEnv: false })
    const started = await runtime.start(workload, new AbortController().signal)
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    await request(connection, initialize)
    const response = await request(connection, {
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'ferry_env', arguments: {} },
    })
    const names = JSON.parse(
      (response.result as { content: { text: string }[] }).content[0]!.text
    ) as string[]
    expect(names).toContain('FERRY_TEST_MARKER')
    expect(names).not.toContain('FERRY_SIDECAR_SECRET')
    expect(names).not.toContain('FERRY_SIDECAR_VERIFIER')
    // inheritEnv: false keeps the bridge's own environment out.
    for (const name of Object.keys(process.env).filter((n) => n.startsWith('VITEST'))) {
      expect(names).not.toContain(name)
    }
  })

  it('counts each started session in activeSessions()', async () => {
    const runtime = newRuntime()
    const signal = new AbortController().signal
    const [a, b] = await Promise.all([
      runtime.start(tagged().workload, signal),
      runtime.start(tagged().workload, signal),
    ])
    // One host serves both on one port; dedicated sidecars listen on a port each.
    if (mode === 'shared') expect(a.address).toBe(b.address)
    else expect(a.address).not.toBe(b.address)
    expect(runtime.activeSessions()).toBe(2)
  })

  it("a server command that cannot start is a 'spawn' failure naming the reason", async () => {
    const runtime = newRuntime()
    const { tag, workload } = tagged({ command: '/nonexistent/ferry-test-server' })
    const error = await startError(runtime.start(workload, new AbortController().signal))
    expect(error.failure).toBe('spawn')
    expect(error.message).toMatch(/could not start: .*\/nonexistent\/ferry-test-server.*ENOENT/)
    expect(runtime.activeSessions()).toBe(0)
    expect(processesWith(tag)).toEqual([])
  })

  it("a node binary that does not exist is a 'spawn' failure", async () => {
    const runtime = newRuntime({ nodePath: '/nonexistent/node' })
    const error = await startError(runtime.start(tagged().workload, new AbortController().signal))
    expect(error.failure).toBe('spawn')
    expect(error.message).toContain('ENOENT')
    expect(runtime.activeSessions()).toBe(0)
  })

  it("a missing sidecar bundle is 'exited'", async () => {
    const runtime = newRuntime({ sidecarPath: '/nonexistent/sidecar.mjs' })
    const error = await startError(runtime.start(tagged().workload, new AbortController().signal))
    expect(error.failure).toBe('exited')
  })

  it('an abort during start rejects and kills the sidecar', async () => {
    const runtime = newRuntime()
    const { tag, workload } = tagged()
    const controller = new AbortController()
    const starting = runtime.start(workload, controller.signal)
    // Abort once the dedicated sidecar exists, so the abort has something to kill; a shared
    // host takes tens of milliseconds to boot before it is asked for the session, so an abort
    // on the next turn lands while it boots.
    if (mode === 'dedicated') await until(() => processesWith(tag).length > 0)
    else await new Promise((resolve) => setImmediate(resolve))
    controller.abort()
    const error = await startError(starting)
    expect(error.failure).toBe('timeout')
    expect(error.message).toBe('the session start was aborted')
    // Nothing of it outlives the answer.
    expect(processesWith(tag)).toEqual([])
    expect(runtime.activeSessions()).toBe(0)
  })

  it('an abort with a WorkloadStartError reason rejects with that reason', async () => {
    const runtime = newRuntime()
    const { tag, workload } = tagged()
    const controller = new AbortController()
    const starting = runtime.start(workload, controller.signal)
    const reason = new WorkloadStartError('timeout', 'the session did not become ready within 1 ms')
    controller.abort(reason)
    expect(await startError(starting)).toBe(reason)
    await until(() => processesWith(tag).length === 0)
  })

  it('an already aborted signal rejects without leaving a process behind', async () => {
    const runtime = newRuntime()
    const { tag, workload } = tagged()
    const error = await startError(runtime.start(workload, AbortSignal.abort()))
    expect(error.failure).toBe('timeout')
    await until(() => processesWith(tag).length === 0)
  })

  it('stopAll() stops every session it started, server processes included', async () => {
    const runtime = newRuntime()
    const signal = new AbortController().signal
    const { tag, workload } = tagged()
    const workloads = [workload, { ...workload, sessionName: newSessionName() }]
    const started = await Promise.all(workloads.map((w) => runtime.start(w, signal)))
    const relays = workloads.map((w) => relayOf(runtime, w.sessionName)!.pid!)
    // Two servers, and two dedicated sidecars (whose command lines name the server's).
    expect(processesWith(tag)).toHaveLength(mode === 'shared' ? 2 : 4)
    await runtime.stopAll()
    expect(runtime.activeSessions()).toBe(0)
    expect(processesWith(tag)).toEqual([])
    // The host too, and its socket.
    expect(relays.filter(isAlive)).toEqual([])
    if (mode === 'shared') {
      expect(existsSync(dirname(started[0]!.address.slice('ws+unix://'.length)))).toBe(false)
    }
    for (const [i, workload] of started.entries()) {
      const error = await SidecarConnection.dial({
        address: workload.address,
        sessionName: workloads[i]!.sessionName,
        secret: workloads[i]!.secret,
        timeoutMs: 2000,
        maxPayload: 1024,
        heartbeatMs: 15_000,
      }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(DialError)
      expect((error as DialError).gone).toBe(true)
    }
    await runtime.stopAll() // nothing left: returns at once
  })

  it('stop() waits for a session that ended through its sidecar, and is idempotent', async () => {
    const runtime = newRuntime()
    const { tag, workload } = tagged()
    const started = await runtime.start(workload, new AbortController().signal)
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    bye(connection)
    await runtime.stop({ sessionName: workload.sessionName })
    expect(runtime.activeSessions()).toBe(0)
    expect(processesWith(tag)).toEqual([])
    await runtime.stop({ sessionName: workload.sessionName })
    await runtime.stop({ sessionName: 'ferry-unknown' })
  })

  it('close() forgets its sessions but leaves them running', async () => {
    const runtime = newRuntime()
    const { tag, workload } = tagged()
    const started = await runtime.start(workload, new AbortController().signal)
    const relay = relayOf(runtime, workload.sessionName)!.pid!
    await runtime.close()
    expect(runtime.activeSessions()).toBe(0)
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    expect(connection.isOpen).toBe(true)
    // End it the way a bridge would.
    bye(connection)
    await until(() => processesWith(tag).length === 0)
    // With its last session over and no bridge to ask for more, the host exits too.
    await until(() => !isAlive(relay))
  })
})

describe('LocalRuntime, shared sidecar host', () => {
  const refusal = (address: string, sessionName: string, secret: string) =>
    SidecarConnection.dial({
      address,
      sessionName,
      secret,
      timeoutMs: 2000,
      maxPayload: 1024,
      heartbeatMs: 15_000,
    }).then(
      () => undefined,
      (e: unknown) => e as DialError
    )

  it("keeps sessions on one host apart: a session's secret opens no other session", async () => {
    const runtime = newRuntime()
    const signal = new AbortController().signal
    const a = spec()
    const b = spec()
    const [startedA, startedB] = await Promise.all([
      runtime.start(a, signal),
      runtime.start(b, signal),
    ])
    expect(startedA.address).toBe(startedB.address)
    // B's name with A's secret, and a name the host does not serve.
    const wrongSecret = await refusal(startedB.address, b.sessionName, a.secret)
    expect(wrongSecret?.message).toContain('HTTP 401')
    const unknown = await refusal(startedA.address, newSessionName(), a.secret)
    expect(unknown?.message).toContain('HTTP 404')
    expect(unknown?.gone).toBe(true)
    // Each session reaches its own server.
    for (const workload of [a, b]) {
      const connection = await dial(startedA.address, workload.sessionName, workload.secret)
      expect((await request(connection, initialize)).result).toMatchObject({
        serverInfo: { name: 'ferry-conformance-fixture' },
      })
    }
  })

  it('a session that ends leaves the others running on the host', async () => {
    const runtime = newRuntime()
    const signal = new AbortController().signal
    const a = spec()
    const b = spec()
    const started = await runtime.start(a, signal)
    await runtime.start(b, signal)
    const connection = await dial(started.address, a.sessionName, a.secret)
    bye(connection)
    await runtime.stop({ sessionName: a.sessionName })
    expect(runtime.isRunning(a.sessionName)).toBe(false)
    expect(runtime.isRunning(b.sessionName)).toBe(true)
    expect((await refusal(started.address, a.sessionName, a.secret))?.gone).toBe(true)
    const other = await dial(started.address, b.sessionName, b.secret)
    expect((await request(other, initialize)).result).toBeDefined()
  })

  it('when the host dies its sessions are over, and the next session gets a new host', async () => {
    const runtime = newRuntime()
    const signal = new AbortController().signal
    const { sessionName } = spec()
    const first = spec()
    const started = await runtime.start(first, signal)
    const host = relayOf(runtime, first.sessionName)!
    const socketDir = dirname(started.address.slice('ws+unix://'.length))
    expect(existsSync(socketDir)).toBe(true)
    host.kill('SIGKILL')
    await until(() => runtime.activeSessions() === 0)
    // The bridge removes what the killed host could not.
    expect(existsSync(socketDir)).toBe(false)
    expect((await refusal(started.address, first.sessionName, first.secret))?.gone).toBe(true)
    const next = { ...spec(), sessionName }
    const restarted = await runtime.start(next, signal)
    expect(relayOf(runtime, sessionName)!.pid).not.toBe(host.pid)
    const connection = await dial(restarted.address, next.sessionName, next.secret)
    expect((await request(connection, initialize)).result).toBeDefined()
  })

  it('a runtime started after close() uses a host of its own while the old one serves on', async () => {
    const old = newRuntime()
    const signal = new AbortController().signal
    const a = spec()
    const startedA = await old.start(a, signal)
    const oldHost = relayOf(old, a.sessionName)!.pid!
    await old.close()
    // The bridge restarted: a new runtime, a new host.
    const fresh = newRuntime()
    const b = spec()
    const startedB = await fresh.start(b, signal)
    expect(startedB.address).not.toBe(startedA.address)
    const connection = await dial(startedA.address, a.sessionName, a.secret)
    expect((await request(connection, initialize)).result).toBeDefined()
    bye(connection)
    await until(() => !isAlive(oldHost))
    expect(fresh.isRunning(b.sessionName)).toBe(true)
  })
})
