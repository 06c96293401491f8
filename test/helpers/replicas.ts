/**
 * @module test/helpers/replicas
 *
 * Several Ferry bridge replicas behind a round-robin reverse proxy, all on 127.0.0.1, for the
 * scale and chaos tests (issue #4):
 *
 * - {@link RoundRobinProxy}: a small HTTP reverse proxy written for the tests (`node:http`). Every
 *   request goes to the next upstream in turn — no stickiness, not even within a session. It
 *   forwards the method, path and headers (`Host`, `Mcp-Session-Id`, `Last-Event-ID` …) and
 *   streams both bodies unbuffered, so SSE flows through event by event. A request whose upstream
 *   refuses the connection (before any byte of it was sent) is tried on the next upstream. A
 *   response cut off by its upstream is cut off downstream too. Optionally it probes `/readyz`
 *   like an ingress and passes over upstreams that fail it. Each answer carries
 *   `x-ferry-upstream: <index>`, and {@link RoundRobinProxy.log} records every request.
 * - {@link startReplicaSet}: N `ferry serve` processes (`node --max-semi-space-size=4
 *   bridge/dist/bin.js serve`) sharing one catalog file (the conformance fixture as `fixture`, the
 *   default server) and one keyring file, each on its own port, behind a proxy. Replicas can be
 *   SIGKILLed, SIGTERMed (the drain time is measured), restarted on the same port with the same
 *   files, or rolled one after the other.
 *
 * Every process of a set — bridges, the sidecars they start (detached, so they outlive their
 * bridge) and the MCP servers behind those — carries a marker variable in its environment
 * (`SCALE_TEST_RUN=<random>`, inherited from the bridge), so {@link ReplicaSet.close} finds them
 * all in `/proc`, including sidecars orphaned by a killed bridge, stops them and reports any that
 * would not go.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
  createServer,
  request as httpRequest,
  type ClientRequest,
} from 'node:http'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { pipeline } from 'node:stream'
import { addKeyToFile } from '@ferry/bridge'
import { type LogLine, cleanEnv, ferryBin, fixturePath, tempDir, writeCatalog } from './bridge.ts'
import { commandLine, descendantsOf, isAlive, killTrees, waitGone } from './processes.ts'

// ---------------------------------------------------------------------------------------------
// The proxy

/** One request that went through the proxy. */
export interface ProxyLogEntry {
  /** Order of arrival at the proxy, from 0. */
  seq: number
  method: string
  path: string
  sessionId?: string
  lastEventId?: string
  /** Index of the upstream that answered; -1 when none did. */
  upstream: number
  /** Upstreams that refused the connection before `upstream` was tried. */
  refused: number[]
  /** Status the upstream answered (or 502 from the proxy itself). */
  status?: number
  /** Why the exchange failed, when it did (`ECONNRESET`, `aborted`, `no upstream` …). */
  error?: string
  /** `performance.now()` at arrival, at the upstream's headers, and at the end of the exchange. */
  startedAt: number
  answeredAt?: number
  endedAt?: number
}

/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are not forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

const endToEnd = (headers: IncomingHttpHeaders): OutgoingHttpHeaders => {
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value
  }
  return out
}

const single = (value: string | string[] | undefined) =>
  Array.isArray(value) ? value[0] : (value ?? undefined)

/** Response header naming the upstream (by index) that answered. */
export const UPSTREAM_HEADER = 'x-ferry-upstream'

/** A readiness probe, as a load balancer runs it: `GET <path>` on every upstream, every `intervalMs`. */
export interface ProxyProbe {
  path: string
  intervalMs: number
}

export interface RoundRobinProxyOptions {
  /**
   * Probe upstreams and pass over those whose last probe failed (refused, or not 200) while
   * another one is ready — like an ingress taking a draining replica out of rotation. Without
   * it, every upstream is always in rotation.
   */
  probe?: ProxyProbe
}

export class RoundRobinProxy {
  /** Every request so far, in order of arrival. */
  readonly log: ProxyLogEntry[] = []
  private readonly upstreams: () => readonly number[]
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private readonly outgoing = new Set<ClientRequest>()
  private next = 0
  private listening: number | undefined
  private readonly probe: ProxyProbe | undefined
  private probing: NodeJS.Timeout | undefined
  /** Upstream ports whose last readiness probe failed. */
  private readonly unready = new Set<number>()

  /** `upstreams` is asked for the upstream ports at each request (their order is their index). */
  constructor(upstreams: () => readonly number[], options: RoundRobinProxyOptions = {}) {
    this.upstreams = upstreams
    this.probe = options.probe
    this.server = createServer({ noDelay: true }, (req, res) => this.handle(req, res))
    this.server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
  }

  /** Listens on 127.0.0.1 (a free port unless given); resolves with the port. */
  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => {
        const address = this.server.address()
        this.listening = typeof address === 'object' && address ? address.port : port
        if (this.probe) {
          this.probing = setInterval(() => this.probeAll(), this.probe.intervalMs)
          this.probing.unref()
        }
        resolve(this.listening)
      })
    })
  }

  /** Whether upstream `port` passed its last readiness probe (always true without probes). */
  isReady(port: number): boolean {
    return !this.unready.has(port)
  }

  private probeAll(): void {
    const { path, intervalMs } = this.probe!
    for (const port of this.upstreams()) {
      const probe = httpRequest(
        { host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: intervalMs * 5 },
        (answer) => {
          answer.resume()
          if (answer.statusCode === 200) this.unready.delete(port)
          else this.unready.add(port)
        }
      )
      probe.on('error', () => this.unready.add(port))
      probe.on('timeout', () => probe.destroy())
      probe.end()
    }
  }

  get port(): number {
    if (this.listening === undefined) throw new Error('the proxy is not listening')
    return this.listening
  }

  /** An URL through the proxy; `host` may be `localhost` (the proxy listens on 127.0.0.1). */
  url(path = '/mcp', host = '127.0.0.1'): string {
    return `http://${host}:${this.port}${path}`
  }

  /** Log entries of one session, in order. */
  sessionLog(sessionId: string): ProxyLogEntry[] {
    return this.log.filter((entry) => entry.sessionId === sessionId)
  }

  /** Stops listening and cuts every connection, both sides. */
  close(): Promise<void> {
    clearInterval(this.probing)
    for (const request of this.outgoing) request.destroy()
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
      for (const socket of this.sockets) socket.destroy()
    })
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const entry: ProxyLogEntry = {
      seq: this.log.length,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      upstream: -1,
      refused: [],
      startedAt: performance.now(),
    }
    const sessionId = single(req.headers['mcp-session-id'])
    const lastEventId = single(req.headers['last-event-id'])
    if (sessionId) entry.sessionId = sessionId
    if (lastEventId) entry.lastEventId = lastEventId
    this.log.push(entry)
    const ports = this.upstreams()
    const first = ports.length === 0 ? 0 : this.next++ % ports.length
    let current: ClientRequest | undefined
    // The client went away: let the upstream know at once (the bridge detaches its stream).
    res.once('close', () => {
      if (!res.writableFinished) {
        entry.error ??= 'client closed'
        current?.destroy()
      }
    })
    const fail = (why: string) => {
      entry.error ??= why
      entry.endedAt = performance.now()
      if (res.headersSent) {
        res.destroy()
        return
      }
      entry.status = 502
      const body = JSON.stringify({
        jsonrpc: '2.0',
        id: null,
        error: { code: -32000, message: why },
      })
      res.writeHead(502, { 'content-type': 'application/json', 'x-ferry-proxy-error': why })
      res.end(body)
    }
    // Round robin from `first`; upstreams failing their readiness probe only as a last resort.
    const rotation = ports.map((_, k) => (first + k) % ports.length)
    const order = [
      ...rotation.filter((index) => this.isReady(ports[index]!)),
      ...rotation.filter((index) => !this.isReady(ports[index]!)),
    ]
    const attempt = (k: number) => {
      if (k >= order.length) return fail('no upstream accepted the connection')
      const index = order[k]!
      let connected = false
      const upstream = httpRequest({
        host: '127.0.0.1',
        port: ports[index],
        method: req.method,
        path: req.url,
        headers: endToEnd(req.headers),
        // A fresh connection per request: no stale pooled socket can swallow a request.
        agent: false,
      })
      current = upstream
      this.outgoing.add(upstream)
      upstream.once('close', () => this.outgoing.delete(upstream))
      upstream.once('socket', (socket) => {
        socket.setNoDelay(true)
        socket.once('connect', () => {
          connected = true
          // Only now is the request body read, so a refused attempt has consumed none of it.
          req.pipe(upstream)
        })
      })
      upstream.on('error', (error: NodeJS.ErrnoException) => {
        if (!connected && error.code === 'ECONNREFUSED' && !res.destroyed) {
          entry.refused.push(index)
          attempt(k + 1)
          return
        }
        fail(error.code ?? error.message)
      })
      upstream.once('response', (answer) => {
        entry.upstream = index
        entry.status = answer.statusCode
        entry.answeredAt = performance.now()
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, {
          ...endToEnd(answer.headers),
          [UPSTREAM_HEADER]: String(index),
        })
        res.flushHeaders()
        pipeline(answer, res, (error) => {
          entry.endedAt = performance.now()
          if (error) {
            // Cut off mid-body (a killed replica): the client must see a broken stream too.
            entry.error ??= (error as NodeJS.ErrnoException).code ?? error.message
            res.destroy()
            upstream.destroy()
          }
        })
      })
    }
    attempt(0)
  }
}

/** Starts a proxy in front of `upstreams` (ports, or a function giving them per request). */
export const startRoundRobinProxy = async (
  upstreams: readonly number[] | (() => readonly number[]),
  options: RoundRobinProxyOptions = {}
): Promise<RoundRobinProxy> => {
  const proxy = new RoundRobinProxy(
    typeof upstreams === 'function' ? upstreams : () => upstreams,
    options
  )
  await proxy.listen()
  return proxy
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping

/** Name of the marker variable every process of a replica set carries. */
export const MARKER_ENV = 'SCALE_TEST_RUN'

/** Live processes (zombies excluded) whose environment holds `<MARKER_ENV>=<marker>`. */
export const markedProcesses = (marker: string): number[] => {
  const needle = `${MARKER_ENV}=${marker}\0`
  const found: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let environ: string
    try {
      environ = readFileSync(`/proc/${name}/environ`, 'latin1')
    } catch {
      continue
    }
    if (`${environ}\0`.includes(needle) && isAlive(Number(name))) found.push(Number(name))
  }
  return found
}

/** Conformance fixture server processes among `pids` (one per session on `fixture`). */
export const fixtureServers = (pids: number[]): number[] =>
  pids.filter((pid) => {
    const words = commandLine(pid).split(' ')
    return words.includes(fixturePath) && !words.some((word) => word.endsWith('sidecar.mjs'))
  })

// ---------------------------------------------------------------------------------------------
// Replicas

/** How a replica process ended, and how long it took after the signal. */
export interface ReplicaExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** `performance.now()` when the signal was sent. */
  signalledAt: number
  /** Milliseconds from the signal to the process's exit. */
  ms: number
}

export interface Replica {
  readonly index: number
  /** Its port; the same across restarts. */
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  /** Its MCP endpoint (`/mcp`, the default server, or `/<server>/mcp`), bypassing the proxy. */
  url(server?: string): string
  /** The current process (the latest start). */
  readonly child: ChildProcess
  /** How many times it was started (1 after the first start). */
  readonly generation: number
  readonly running: boolean
  /** Parsed JSON log lines of every generation (bridge and the sidecars it started). */
  readonly logs: LogLine[]
  /** The last 256 KiB of standard error of every generation. */
  stderr(): string
  /** Resolves when the current process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export interface ReplicaSetOptions {
  /** How many replicas (default 3). */
  replicas?: number
  /** Overrides of the catalog's `bridge:` section. */
  bridge?: Record<string, unknown>
  /** Overrides of the `fixture` server entry. */
  fixture?: Record<string, unknown>
  /** More servers for the catalog. */
  servers?: Record<string, Record<string, unknown>>
  /** An existing keyring file; default: a new one with one primary key, `key-a`. */
  keysFile?: string
  /** Extra environment of the bridge processes. */
  env?: NodeJS.ProcessEnv
  /** How long a replica may take to report its port (default 20 s). */
  readyTimeoutMs?: number
  /**
   * The proxy's readiness probe of `/readyz` (default every 100 ms); `false` keeps every replica
   * in rotation, relying on refused connections alone.
   */
  probe?: ProxyProbe | false
}

export interface ReplicaSet {
  readonly dir: string
  readonly catalogFile: string
  readonly keysFile: string
  /** The marker in every process's environment (`SCALE_TEST_RUN=<marker>`). */
  readonly marker: string
  readonly replicas: readonly Replica[]
  readonly proxy: RoundRobinProxy
  /** The MCP endpoint through the proxy (`/mcp` = the fixture, or `/<server>/mcp`). */
  url(server?: string): string
  /** Sends `signal` to replica `index` and waits for it to exit (SIGKILL after `timeoutMs`). */
  stop(index: number, signal?: NodeJS.Signals, timeoutMs?: number): Promise<ReplicaExit>
  /** SIGKILL, and the wait for the exit. */
  kill(index: number): Promise<ReplicaExit>
  /** Starts replica `index` again on its port with the same catalog and keyring files. */
  restart(index: number): Promise<Replica>
  /** Restarts every replica that is not running. */
  ensureRunning(): Promise<void>
  /**
   * A rolling restart: each replica in turn is sent SIGTERM, awaited, and started again;
   * `pauseMs` (default 250) separates one replica's restart from the next one's SIGTERM, so
   * traffic reaches the new process. Resolves with each replica's exit (drain time in `ms`).
   */
  roll(options?: { pauseMs?: number; timeoutMs?: number }): Promise<ReplicaExit[]>
  /** Every live process of the set (bridges, sidecars, servers), found in `/proc`. */
  processes(): number[]
  /**
   * Stops the proxy, every bridge, every sidecar and every server of the set, and resolves with
   * a description of each process still alive afterwards (so `toEqual([])` says what was left).
   */
  close(): Promise<string[]>
}

const STDERR_KEEP = 256 * 1024

/** Writes the catalog the replicas share: the conformance fixture as `fixture` (default server). */
export const writeReplicaCatalog = (dir: string, options: ReplicaSetOptions = {}): string =>
  writeCatalog(dir, {
    bridge: {
      host: '127.0.0.1',
      port: 0,
      // `info`: replicas report their port in the `bridge listening` line.
      logLevel: 'info',
      shutdownGrace: '3s',
      sse: { retry: 200, keepAlive: '5s' },
      ...options.bridge,
    },
    defaultServer: 'fixture',
    servers: {
      fixture: {
        runtime: 'local',
        command: process.execPath,
        args: [fixturePath],
        idleTimeout: '2m',
        stopGrace: '1s',
        ...options.fixture,
      },
      ...options.servers,
    },
  })

class ReplicaProcess implements Replica {
  readonly index: number
  port: number
  generation = 0
  child!: ChildProcess
  exited!: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly logs: LogLine[] = []
  private stderrText = ''

  constructor(index: number, port: number) {
    this.index = index
    this.port = port
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`
  }

  url(server?: string): string {
    return server ? `${this.origin}/${server}/mcp` : `${this.origin}/mcp`
  }

  get running(): boolean {
    return this.generation > 0 && this.child.exitCode === null && this.child.signalCode === null
  }

  stderr(): string {
    return this.stderrText
  }

  /** Spawns the process and waits for its `bridge listening` line. */
  start(env: NodeJS.ProcessEnv, readyTimeoutMs: number): Promise<void> {
    const child = spawn(
      process.execPath,
      ['--max-semi-space-size=4', ferryBin, 'serve'],
      // stdout is ignored; standard error (shared with the sidecars it starts) is read to the end.
      { env: { ...env, PORT: String(this.port) }, stdio: ['ignore', 'ignore', 'pipe'] }
    )
    this.child = child
    this.generation++
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal }))
    )
    this.exited = exited
    const lines = createInterface({ input: child.stderr! })
    return new Promise((resolve, reject) => {
      let ready = false
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`replica ${this.index} did not report its port:\n${this.stderrText}`))
      }, readyTimeoutMs)
      void exited.then(({ code, signal }) => {
        clearTimeout(timer)
        if (!ready)
          reject(
            new Error(
              `replica ${this.index} exited (${code ?? signal}) before listening:\n${this.stderrText}`
            )
          )
      })
      lines.on('line', (line) => {
        this.stderrText += `${line}\n`
        if (this.stderrText.length > STDERR_KEEP)
          this.stderrText = this.stderrText.slice(-STDERR_KEEP)
        let parsed: LogLine
        try {
          parsed = JSON.parse(line) as LogLine
        } catch {
          return
        }
        this.logs.push(parsed)
        if (!ready && parsed.msg === 'bridge listening' && typeof parsed.port === 'number') {
          ready = true
          clearTimeout(timer)
          this.port = parsed.port
          resolve()
        }
      })
    })
  }
}

/** Starts `replicas` bridge processes and a round-robin proxy in front of them. */
export const startReplicaSet = async (options: ReplicaSetOptions = {}): Promise<ReplicaSet> => {
  const dir = tempDir('ferry-scale-')
  const catalogFile = writeReplicaCatalog(dir, options)
  let keysFile = options.keysFile
  if (!keysFile) {
    keysFile = join(dir, 'keys.json')
    await addKeyToFile(keysFile, { id: 'key-a', primary: true })
  }
  const marker = randomBytes(8).toString('hex')
  const env: NodeJS.ProcessEnv = {
    ...cleanEnv(),
    ...options.env,
    FERRY_CONFIG: catalogFile,
    FERRY_SESSION_KEYS: keysFile,
    [MARKER_ENV]: marker,
  }
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000
  const replicas = Array.from(
    { length: options.replicas ?? 3 },
    (_, index) => new ReplicaProcess(index, 0)
  )
  /** Pids of every process ever seen in the set, for the final sweep. */
  const seen = new Set<number>()
  const noteProcesses = () => {
    for (const replica of replicas) {
      if (replica.generation === 0 || !replica.child.pid) continue
      seen.add(replica.child.pid)
      if (replica.running) for (const pid of descendantsOf(replica.child.pid)) seen.add(pid)
    }
    for (const pid of markedProcesses(marker)) seen.add(pid)
  }
  const probe = options.probe ?? { path: '/readyz', intervalMs: 100 }
  const proxy = new RoundRobinProxy(
    () => replicas.map((replica) => replica.port),
    probe ? { probe } : {}
  )
  try {
    await Promise.all(replicas.map((replica) => replica.start(env, readyTimeoutMs)))
    await proxy.listen()
  } catch (error) {
    for (const replica of replicas) if (replica.generation > 0) replica.child.kill('SIGKILL')
    throw error
  }

  const stop = async (
    index: number,
    signal: NodeJS.Signals = 'SIGTERM',
    timeoutMs = 30_000
  ): Promise<ReplicaExit> => {
    const replica = replicas[index]!
    const signalledAt = performance.now()
    if (!replica.running) return { ...(await replica.exited), signalledAt, ms: 0 }
    // Sent synchronously, so a caller reacting to an event kills at that very point.
    replica.child.kill(signal)
    const timer = setTimeout(() => replica.child.kill('SIGKILL'), timeoutMs)
    const exit = await replica.exited
    clearTimeout(timer)
    return { ...exit, signalledAt, ms: performance.now() - signalledAt }
  }
  const restart = async (index: number): Promise<Replica> => {
    const replica = replicas[index]!
    if (replica.running) throw new Error(`replica ${index} is still running`)
    await replica.start(env, readyTimeoutMs)
    return replica
  }
  let closing: Promise<string[]> | undefined

  return {
    dir,
    catalogFile,
    keysFile,
    marker,
    replicas,
    proxy,
    url: (server) => proxy.url(server ? `/${server}/mcp` : '/mcp'),
    stop,
    kill: (index) => stop(index, 'SIGKILL'),
    restart,
    ensureRunning: async () => {
      await Promise.all(
        replicas.map((replica) =>
          replica.running ? undefined : restart(replica.index).then(() => undefined)
        )
      )
    },
    roll: async ({ pauseMs = 250, timeoutMs = 30_000 } = {}) => {
      const exits: ReplicaExit[] = []
      for (const replica of replicas) {
        exits.push(await stop(replica.index, 'SIGTERM', timeoutMs))
        await restart(replica.index)
        await new Promise((resolve) => setTimeout(resolve, pauseMs))
      }
      return exits
    },
    processes: () => markedProcesses(marker),
    close: () =>
      (closing ??= (async () => {
        await proxy.close()
        // Note every sidecar and server while their bridges still run, then stop the bridges.
        noteProcesses()
        const bridges = replicas.filter((r) => r.generation > 0).map((r) => r.child.pid!)
        for (const replica of replicas) if (replica.running) replica.child.kill('SIGKILL')
        await Promise.all(replicas.map((replica) => replica.generation > 0 && replica.exited))
        noteProcesses()
        // Sidecars stop their servers on SIGTERM; whatever is left then gets SIGKILL.
        const others = [...seen].filter((pid) => !bridges.includes(pid))
        killTrees(others, 'SIGTERM')
        killTrees(await waitGone(others, 5000), 'SIGKILL')
        await waitGone([...seen, ...markedProcesses(marker)], 5000)
        return markedProcesses(marker).map((pid) => `${pid} ${commandLine(pid).slice(0, 300)}`)
      })()),
  }
}

/** Replaces the keyring file's JSON through `edit` (e.g. to change `primary` or drop a key). */
export const editKeyringFile = (
  file: string,
  edit: (keyring: { keys: { id: string }[]; primary?: string }) => void
): void => {
  const keyring = JSON.parse(readFileSync(file, 'utf8')) as {
    keys: { id: string }[]
    primary?: string
  }
  edit(keyring)
  writeFileSync(file, `${JSON.stringify(keyring, null, 2)}\n`, { mode: 0o600 })
}
