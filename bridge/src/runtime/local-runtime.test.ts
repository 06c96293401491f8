/**
 * @module
 * Tests for the local runtime: real sidecars from the bundle, running the
 * conformance fixture, as child processes on 127.0.0.1.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
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

describe('LocalRuntime', () => {
  it('starts a sidecar on 127.0.0.1 that serves the session with its secret', async () => {
    const runtime = newRuntime()
    expect(runtime.kind).toBe('local')
    const workload = spec()
    const started = await runtime.start(workload, new AbortController().signal)
    expect(started.address).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/)
    expect(runtime.activeSessions()).toBe(1)
    const health = await fetch(`${started.address.replace('ws:', 'http:')}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.text()).toBe('ok')
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    const response = await request(connection, {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 't', version: '1' },
      },
    })
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
    const workload = spec({ env: { FERRY_TEST_MARKER: 'yes' }, inheritEnv: false })
    const started = await runtime.start(workload, new AbortController().signal)
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    await request(connection, {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 't', version: '1' },
      },
    })
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
    const [a, b] = await Promise.all([runtime.start(spec(), signal), runtime.start(spec(), signal)])
    expect(a.address).not.toBe(b.address)
    expect(runtime.activeSessions()).toBe(2)
  })

  it("a server command that cannot start is a 'spawn' failure naming the reason", async () => {
    const runtime = newRuntime()
    const workload = spec({ command: '/nonexistent/ferry-test-server', args: [] })
    const error = await startError(runtime.start(workload, new AbortController().signal))
    expect(error.failure).toBe('spawn')
    expect(error.message).toMatch(/could not start: .*\/nonexistent\/ferry-test-server.*ENOENT/)
    expect(runtime.activeSessions()).toBe(0)
    expect(processesWith(workload.sessionName)).toEqual([])
  })

  it("a node binary that does not exist is a 'spawn' failure", async () => {
    const runtime = newRuntime({ nodePath: '/nonexistent/node' })
    const error = await startError(runtime.start(spec(), new AbortController().signal))
    expect(error.failure).toBe('spawn')
    expect(error.message).toContain('ENOENT')
    expect(runtime.activeSessions()).toBe(0)
  })

  it("a missing sidecar bundle is 'exited'", async () => {
    const runtime = newRuntime({ sidecarPath: '/nonexistent/sidecar.mjs' })
    const error = await startError(runtime.start(spec(), new AbortController().signal))
    expect(error.failure).toBe('exited')
  })

  it('an abort during start rejects and kills the sidecar', async () => {
    const runtime = newRuntime()
    const workload = spec()
    const controller = new AbortController()
    const starting = runtime.start(workload, controller.signal)
    // Abort once the child exists, so the abort has something to kill.
    await until(() => processesWith(workload.sessionName).length > 0)
    controller.abort()
    const error = await startError(starting)
    expect(error.failure).toBe('timeout')
    expect(error.message).toBe('the session start was aborted')
    await until(() => processesWith(workload.sessionName).length === 0)
    expect(runtime.activeSessions()).toBe(0)
  })

  it('an abort with a WorkloadStartError reason rejects with that reason', async () => {
    const runtime = newRuntime()
    const workload = spec()
    const controller = new AbortController()
    const starting = runtime.start(workload, controller.signal)
    const reason = new WorkloadStartError('timeout', 'the session did not become ready within 1 ms')
    controller.abort(reason)
    expect(await startError(starting)).toBe(reason)
    await until(() => processesWith(workload.sessionName).length === 0)
  })

  it('an already aborted signal rejects without leaving a process behind', async () => {
    const runtime = newRuntime()
    const workload = spec()
    const error = await startError(runtime.start(workload, AbortSignal.abort()))
    expect(error.failure).toBe('timeout')
    await until(() => processesWith(workload.sessionName).length === 0)
  })

  it('stopAll() stops every session it started, server processes included', async () => {
    const runtime = newRuntime()
    const signal = new AbortController().signal
    const tag = `ferry-tag-${randomUUID()}`
    const workloads = [spec({ args: [FIXTURE, tag] }), spec({ args: [FIXTURE, tag] })]
    const started = await Promise.all(workloads.map((w) => runtime.start(w, signal)))
    expect(processesWith(tag)).toHaveLength(4) // two sidecars, two servers
    await runtime.stopAll()
    expect(runtime.activeSessions()).toBe(0)
    await until(() => processesWith(tag).length === 0)
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
    const workload = spec()
    const started = await runtime.start(workload, new AbortController().signal)
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    connection.open({ t: 'bye' }, undefined, {
      onevent: () => undefined,
      onend: () => undefined,
      onerror: () => undefined,
      onlost: () => undefined,
    })
    await runtime.stop({ sessionName: workload.sessionName })
    expect(runtime.activeSessions()).toBe(0)
    expect(processesWith(workload.sessionName)).toEqual([])
    await runtime.stop({ sessionName: workload.sessionName })
    await runtime.stop({ sessionName: 'ferry-unknown' })
  })

  it('close() forgets its sessions but leaves them running', async () => {
    const runtime = newRuntime()
    const workload = spec()
    const started = await runtime.start(workload, new AbortController().signal)
    await runtime.close()
    expect(runtime.activeSessions()).toBe(0)
    const connection = await dial(started.address, workload.sessionName, workload.secret)
    expect(connection.isOpen).toBe(true)
    // End it the way a bridge would.
    connection.open({ t: 'bye' }, undefined, {
      onevent: () => undefined,
      onend: () => undefined,
      onerror: () => undefined,
      onlost: () => undefined,
    })
    await until(() => processesWith(workload.sessionName).length === 0)
  })
})
