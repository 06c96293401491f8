/**
 * The bundled sidecar as a container runs it: a real process, a real MCP server child, a
 * real WebSocket on 127.0.0.1, frames as the bridge sends them.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes, createHash } from 'node:crypto'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import {
  type BridgeFrameHeader,
  type Frame,
  type SidecarFrameHeader,
  FRAME_PROTOCOL,
  decodeSidecarFrame,
  encodeFrame,
  requestStreamKey,
} from '@ferry/shared'
import { sidecarBundlePath } from './index.ts'
import { TEST_SETTINGS, waitUntil as waitFor } from './test-support.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BUNDLE = sidecarBundlePath()
const FIXTURE = fileURLToPath(new URL('../../test/fixtures/conformance-server.ts', import.meta.url))
const SESSION = 's1'
const HAS_PROC = existsSync('/proc/self/stat')

/** A "server" that ignores SIGTERM and stdin EOF (only SIGKILL ends it), then says `ready` on stderr. */
const STUBBORN_SERVER =
  'process.on("SIGTERM",()=>{});process.stdin.resume();setInterval(()=>{},1000);console.error("ready")'

/** The bundle starts real processes: a longer bound than the unit tests'. */
const waitUntil = (condition: () => boolean, what: string) => waitFor(condition, what, 8000)

/** Live (not zombie: this sandbox's init may not reap orphans) processes in a process group. */
const liveGroupMembers = (pgid: number): number[] => {
  const members: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue
    }
    // After the command name: state, ppid, pgrp, …
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (state !== 'Z' && Number(pgrp) === pgid) members.push(Number(entry))
  }
  return members
}

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

interface RunningBundle {
  child: ChildProcess
  secret: string
  port: number
  exited: Promise<Exit>
  /** The sidecar's standard error, line by line. */
  stderr: string[]
  /** Its standard error lines that are JSON. */
  logs(): Array<Record<string, unknown>>
  serverPid(): Promise<number>
  /** Resolves once the server wrote `ready` to its stderr. */
  serverReady(): Promise<void>
}

const running: RunningBundle[] = []
const cleanups: Array<() => void> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup()
  for (const sidecar of running.splice(0)) {
    const pid = sidecar.logs().find((l) => l.msg === 'server started')?.pid
    if (sidecar.child.exitCode === null && sidecar.child.signalCode === null) {
      sidecar.child.kill('SIGKILL')
    }
    await sidecar.exited
    if (typeof pid === 'number') {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // Already gone, as it should be.
      }
    }
  }
})

beforeAll(() => {
  if (!existsSync(BUNDLE)) {
    throw new Error(`${BUNDLE} is missing: run "npm run build" in sidecar first`)
  }
})

/** Spawns the bundle; resolves once it reported its port on fd 3 (or rejects if it exits). */
const startBundle = async (
  extraArgs: string[] = [],
  nodeArgs: string[] = [],
  server: string[] = [process.execPath, FIXTURE]
): Promise<RunningBundle> => {
  const secret = randomBytes(16).toString('hex')
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      BUNDLE,
      '--session',
      SESSION,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--ready-fd',
      '3',
      '--stop-grace',
      '2s',
      ...extraArgs,
      '--',
      ...server,
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        FERRY_SIDECAR_VERIFIER: createHash('sha256').update(secret).digest('base64url'),
      },
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    }
  )
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal }))
  )
  const stderr: string[] = []
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line))
  const logs = () =>
    stderr.flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>]
      } catch {
        return []
      }
    })
  const serverPid = async () => {
    await waitUntil(() => logs().some((l) => l.msg === 'server started'), 'the server to start')
    return logs().find((l) => l.msg === 'server started')!.pid as number
  }
  const serverReady = () =>
    waitUntil(
      () => logs().some((l) => l.stream === 'stderr' && l.line === 'ready'),
      'the server to be ready'
    )
  const sidecar = { child, secret, exited, stderr, logs, serverPid, serverReady, port: 0 }
  running.push(sidecar)
  const ready = child.stdio[3] as Readable
  sidecar.port = await new Promise<number>((resolve, reject) => {
    let text = ''
    ready.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      if (text.includes('\n')) resolve((JSON.parse(text) as { port: number }).port)
    })
    void exited.then((exit) =>
      reject(
        new Error(
          `the sidecar exited before it was ready: ${JSON.stringify(exit)}\n${stderr.join('\n')}`
        )
      )
    )
  })
  return sidecar
}

/** A bridge connection: sends frames, records what comes back. */
class Bridge {
  readonly frames: Array<Frame<SidecarFrameHeader>> = []
  readonly ws: WebSocket
  closed = false
  constructor(ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data) => {
      const frame = decodeSidecarFrame(data.toString())
      if (!frame) throw new Error(`malformed frame from the sidecar: ${data.toString()}`)
      this.frames.push(frame)
    })
    ws.on('close', () => (this.closed = true))
  }

  static connect(sidecar: Pick<RunningBundle, 'port' | 'secret'>): Promise<Bridge> {
    const ws = new WebSocket(`ws://127.0.0.1:${sidecar.port}/`, FRAME_PROTOCOL, {
      headers: { 'x-ferry-session': SESSION, authorization: `Bearer ${sidecar.secret}` },
    })
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Bridge(ws)))
      ws.once('error', reject)
    })
  }

  send(header: BridgeFrameHeader, payload?: unknown): void {
    this.ws.send(encodeFrame(header, payload === undefined ? undefined : JSON.stringify(payload)))
  }

  async next<T extends SidecarFrameHeader['t']>(
    t: T,
    match: (header: Extract<SidecarFrameHeader, { t: T }>) => boolean = () => true
  ): Promise<{ header: Extract<SidecarFrameHeader, { t: T }>; payload: string | undefined }> {
    const find = () =>
      this.frames.find(
        (f) => f.header.t === t && match(f.header as Extract<SidecarFrameHeader, { t: T }>)
      ) as
        { header: Extract<SidecarFrameHeader, { t: T }>; payload: string | undefined } | undefined
    await waitUntil(() => find() !== undefined, `a ${t} frame`)
    return find()!
  }

  /** The response event (fin) on a channel, parsed. */
  async response(ch: number): Promise<Record<string, unknown>> {
    const { payload } = await this.next('ev', (h) => h.ch === ch && h.fin === 1)
    return JSON.parse(payload!)
  }

  indexOf(predicate: (header: SidecarFrameHeader) => boolean): number {
    return this.frames.findIndex((f) => predicate(f.header))
  }

  close(): void {
    this.ws.terminate()
  }
}

const initialize = async (bridge: Bridge) => {
  bridge.send(
    { t: 'req', ch: 1 },
    {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 'bundle-test', version: '1.0.0' },
      },
    }
  )
  const response = await bridge.response(1)
  bridge.send({ t: 'msg', ch: 2 }, { jsonrpc: '2.0', method: 'notifications/initialized' })
  await bridge.next('ack', (h) => h.ch === 2)
  return response
}

const callTool = (
  bridge: Bridge,
  ch: number,
  id: number | string,
  name: string,
  args: Record<string, unknown> = {},
  meta?: Record<string, unknown>
) =>
  bridge.send(
    { t: 'req', ch },
    {
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) },
    }
  )

const toolText = (response: Record<string, unknown>) =>
  (response.result as { content: Array<{ text: string }> }).content[0]!.text

const expectGroupGone = async (pgid: number) => {
  if (!HAS_PROC) return
  await waitUntil(() => liveGroupMembers(pgid).length === 0, `process group ${pgid} to be gone`)
}

describe('the sidecar bundle', () => {
  it('relays initialize and tool calls, with progress on the request stream', async () => {
    const sidecar = await startBundle()
    const bridge = await Bridge.connect(sidecar)
    const init = await initialize(bridge)
    expect(init).toMatchObject({
      jsonrpc: '2.0',
      id: 1,
      result: { serverInfo: { name: 'ferry-conformance-fixture' } },
    })
    expect(bridge.frames[0]!.header).toEqual({
      t: 'ev',
      ch: 1,
      id: `${requestStreamKey(1)}.1`,
      fin: 1,
    })

    callTool(bridge, 3, 2, 'ferry_echo', { text: 'héllo\nwörld ✓' })
    expect(toolText(await bridge.response(3))).toBe('héllo\nwörld ✓')

    callTool(
      bridge,
      4,
      'p',
      'ferry_progress',
      { count: 2, intervalMs: 10 },
      { progressToken: 'tok' }
    )
    const done = await bridge.response(4)
    expect(toolText(done)).toBe('done 2')
    const events = bridge.frames.filter((f) => f.header.t === 'ev' && f.header.ch === 4)
    expect(events.map((f) => (f.header as { id: string }).id)).toEqual(
      [1, 2, 3].map((n) => `${requestStreamKey('p')}.${n}`)
    )
    expect(events.slice(0, 2).map((f) => JSON.parse(f.payload!).params)).toEqual([
      { progressToken: 'tok', progress: 1, total: 2 },
      { progressToken: 'tok', progress: 2, total: 2 },
    ])
  })

  it("keeps the session secret's verifier out of the server environment", async () => {
    const sidecar = await startBundle()
    const bridge = await Bridge.connect(sidecar)
    await initialize(bridge)
    callTool(bridge, 3, 2, 'ferry_env')
    const names = JSON.parse(toolText(await bridge.response(3))) as string[]
    expect(names).toContain('PATH')
    expect(names).not.toContain('FERRY_SIDECAR_VERIFIER')
  })

  it('answers pending requests at once when the server exits, then exits with its code', async () => {
    const sidecar = await startBundle()
    const serverPid = await sidecar.serverPid()
    const bridge = await Bridge.connect(sidecar)
    await initialize(bridge)
    callTool(bridge, 3, 2, 'ferry_sleep', { ms: 60_000 })
    callTool(bridge, 4, 3, 'ferry_exit', { code: 3, delayMs: 0 })
    const [sleeping, exiting] = await Promise.all([bridge.response(3), bridge.response(4)])
    for (const [response, id] of [
      [sleeping, 2],
      [exiting, 3],
    ] as const) {
      expect(response).toMatchObject({ jsonrpc: '2.0', id, error: { code: -32000 } })
      expect((response.error as { message: string }).message).toMatch(/exited with code 3/)
    }
    const exit = await bridge.next('exit')
    expect(exit.header).toMatchObject({ reason: 'server_exit', code: 3 })
    const exitAt = bridge.indexOf((h) => h.t === 'exit')
    expect(bridge.indexOf((h) => h.t === 'ev' && h.ch === 3 && h.fin === 1)).toBeLessThan(exitAt)
    expect(bridge.indexOf((h) => h.t === 'ev' && h.ch === 4 && h.fin === 1)).toBeLessThan(exitAt)
    expect(await sidecar.exited).toEqual({ code: 3, signal: null })
    await expectGroupGone(serverPid)
  })

  it('stops on SIGTERM: pending requests answered, exit frame "shutdown", exit code 0', async () => {
    const sidecar = await startBundle()
    const serverPid = await sidecar.serverPid()
    const bridge = await Bridge.connect(sidecar)
    await initialize(bridge)
    callTool(bridge, 3, 2, 'ferry_sleep', { ms: 60_000 })
    // The server reads its input in order: once the echo is answered, the sleep is under way.
    callTool(bridge, 4, 3, 'ferry_echo', { text: 'ready' })
    await bridge.response(4)
    sidecar.child.kill('SIGTERM')
    const response = await bridge.response(3)
    expect(response).toMatchObject({
      id: 2,
      error: { code: -32000, message: 'The session was stopped' },
    })
    expect((await bridge.next('exit')).header).toMatchObject({ t: 'exit', reason: 'shutdown' })
    expect(await sidecar.exited).toEqual({ code: 0, signal: null })
    await expectGroupGone(serverPid)
  })

  it('refuses requests with not_running while the server is being stopped', async () => {
    // A server that shrugs off SIGTERM and stdin EOF holds the stop open for the grace period.
    const sidecar = await startBundle([], [], [process.execPath, '-e', STUBBORN_SERVER])
    const serverPid = await sidecar.serverPid()
    await sidecar.serverReady()
    const bridge = await Bridge.connect(sidecar)
    sidecar.child.kill('SIGTERM')
    await waitUntil(
      () => sidecar.logs().some((l) => l.msg === 'stopping the MCP server'),
      'the sidecar to start stopping'
    )
    bridge.send({ t: 'req', ch: 1 }, { jsonrpc: '2.0', id: 1, method: 'ping' })
    bridge.send({ t: 'msg', ch: 2 }, { jsonrpc: '2.0', method: 'notifications/initialized' })
    for (const ch of [1, 2]) {
      expect((await bridge.next('err', (h) => h.ch === ch)).header.code).toBe('not_running')
    }
    expect((await bridge.next('exit')).header).toMatchObject({ reason: 'shutdown' })
    expect(await sidecar.exited).toEqual({ code: 0, signal: null })
    await expectGroupGone(serverPid)
  })

  it('ends an idle session on its own, exit code 0', async () => {
    const sidecar = await startBundle(['--idle-timeout', '300ms'])
    const serverPid = await sidecar.serverPid()
    const bridge = await Bridge.connect(sidecar)
    expect((await bridge.next('exit')).header).toMatchObject({ t: 'exit', reason: 'idle' })
    expect(await sidecar.exited).toEqual({ code: 0, signal: null })
    await expectGroupGone(serverPid)
  })

  it('ends the session on bye: ack, exit frame "deleted", exit code 0', async () => {
    const sidecar = await startBundle()
    const serverPid = await sidecar.serverPid()
    const bridge = await Bridge.connect(sidecar)
    const other = await Bridge.connect(sidecar)
    await initialize(bridge)
    bridge.send({ t: 'bye', ch: 9 })
    await bridge.next('ack', (h) => h.ch === 9)
    for (const b of [bridge, other]) {
      expect((await b.next('exit')).header).toMatchObject({ t: 'exit', reason: 'deleted' })
    }
    expect(bridge.indexOf((h) => h.t === 'ack' && h.ch === 9)).toBeLessThan(
      bridge.indexOf((h) => h.t === 'exit')
    )
    expect(await sidecar.exited).toEqual({ code: 0, signal: null })
    await waitUntil(() => bridge.closed && other.closed, 'the connections to close')
    await expectGroupGone(serverPid)
  })

  it("logs the server's stderr as tagged JSON lines", async () => {
    const sidecar = await startBundle()
    const bridge = await Bridge.connect(sidecar)
    await initialize(bridge)
    const lines = ['first line', '{"looks":"like json"}', 'ünïcode ✓']
    callTool(bridge, 3, 2, 'ferry_stderr', { lines })
    expect(toolText(await bridge.response(3))).toBe('ok')
    const stderrLogs = () => sidecar.logs().filter((l) => l.stream === 'stderr')
    await waitUntil(() => stderrLogs().length >= lines.length, 'the stderr lines in the log')
    expect(stderrLogs().map((l) => l.line)).toEqual(lines)
    for (const log of stderrLogs()) {
      expect(log).toMatchObject({ component: 'sidecar', session: SESSION, level: 'info' })
    }
    // Every line the sidecar writes to stderr is JSON.
    expect(sidecar.stderr.length).toBe(sidecar.logs().length)
  })

  it('kills the server group and exits 1 with a fatal line on an uncaught exception', async () => {
    // Fault injection: a preload that throws from a signal handler inside the sidecar process.
    const inject =
      'data:text/javascript,process.on("SIGUSR2",()=>{throw new Error("injected failure")})'
    // The server would outlive the sidecar on its own: it ignores EOF and SIGTERM.
    const sidecar = await startBundle(
      [],
      ['--import', inject],
      [process.execPath, '-e', STUBBORN_SERVER]
    )
    const serverPid = await sidecar.serverPid()
    await sidecar.serverReady()
    if (HAS_PROC) expect(liveGroupMembers(serverPid)).toContain(serverPid)
    sidecar.child.kill('SIGUSR2')
    expect(await sidecar.exited).toEqual({ code: 1, signal: null })
    await waitUntil(() => sidecar.logs().some((l) => l.level === 'fatal'), 'the fatal line')
    const fatal = sidecar.logs().find((l) => l.level === 'fatal')
    expect(fatal).toMatchObject({
      component: 'sidecar',
      session: SESSION,
      msg: 'uncaught exception',
      err: { message: 'injected failure' },
    })
    await expectGroupGone(serverPid)
  })

  it('stops the server and exits 1 when it cannot listen', async () => {
    const blocker: Server = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => blocker.close())
    const port = (blocker.address() as { port: number }).port
    const secret = randomBytes(8).toString('hex')
    const child = spawn(
      process.execPath,
      [
        BUNDLE,
        '--session',
        SESSION,
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--stop-grace',
        '2s',
        '--',
        process.execPath,
        FIXTURE,
      ],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          FERRY_SIDECAR_VERIFIER: createHash('sha256').update(secret).digest('base64url'),
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      }
    )
    const stderr: string[] = []
    createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line))
    // 'close' rather than 'exit': every stderr line has been read by then.
    const exit = await new Promise<Exit>((resolve) =>
      child.once('close', (code, signal) => resolve({ code, signal }))
    )
    expect(exit).toEqual({ code: 1, signal: null })
    const logs = stderr.map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(logs.find((l) => l.level === 'fatal')?.msg).toMatch(/EADDRINUSE/)
    const serverPid = logs.find((l) => l.msg === 'server started')?.pid
    expect(typeof serverPid).toBe('number')
    await expectGroupGone(serverPid as number)
  })

  it('host mode needs the IPC channel of the local runtime, and says so', async () => {
    const child = spawn(process.execPath, [BUNDLE, 'host'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
    expect(code).toBe(2)
    expect(stderr).toMatch(/IPC channel/)
  })

  it('host mode, driven over IPC, runs a session and exits when its bridge goes', async () => {
    const child = spawn(process.execPath, [BUNDLE, 'host', '--log-level', 'silent'], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    const events: Array<Record<string, unknown>> = []
    child.on('message', (event: Record<string, unknown>) => events.push(event))
    const next = async (t: string) => {
      const deadline = Date.now() + 10_000
      while (!events.some((e) => e.t === t) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      return events.find((e) => e.t === t)
    }
    const { port } = (await next('listening')) as { port: number }
    const secret = randomBytes(16).toString('hex')
    child.send({
      t: 'start',
      id: 1,
      spec: {
        sessionName: SESSION,
        verifier: createHash('sha256').update(secret).digest('base64url'),
        command: process.execPath,
        args: [FIXTURE],
        env: { PATH: process.env.PATH },
        settings: { ...TEST_SETTINGS, stopGraceMs: 1000 },
      },
    })
    expect(await next('started')).toEqual({ t: 'started', id: 1 })
    const bridge = await Bridge.connect({ port, sessionName: SESSION, secret } as never)
    expect(await initialize(bridge)).toMatchObject({ id: 1, result: { serverInfo: {} } })
    // The bridge goes: the host serves on until its session ends, then exits.
    child.disconnect()
    bridge.send({ t: 'bye', ch: 9 })
    const exit = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(exit).toBe(0)
  })
})
