/**
 * @module test/e2e/crash
 *
 * "Sidecar gone mid-request" (DESIGN.md, Errors and bad input): when the MCP server exits, or the
 * sidecar dies, while requests are pending, every pending request gets a JSON-RPC error at once,
 * and later requests on the session get 404. Nothing is left running afterwards.
 *
 * The pending calls sleep far longer than the test may run; the SDK's own request timeout sits
 * between the two, so a bridge that never answers shows up as a timeout error, not a hang.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js'
import { standardServers, startBridge, type TestBridge } from '../helpers/bridge.ts'
import {
  type JsonRpcMessage,
  type RawSession,
  SdkClients,
  openRawSession,
  post,
  postHeaders,
  sseEvents,
  textOf,
} from '../helpers/mcp.ts'
import { descendantsOf, isAlive, killTrees, leftBehind } from '../helpers/processes.ts'

/** Longer than any test may take: a sleep that ends on its own means the bridge failed. */
const FOREVER_MS = 120_000
/** The SDK gives up on a request after this long (far below FOREVER_MS). */
const SDK_TIMEOUT_MS = 15_000

let bridge: TestBridge
const clients = new SdkClients()
const leftovers: number[] = []

beforeAll(async () => {
  // `fixture` with dedicated sidecars, so a test can kill one session's sidecar; `shared`
  // behind the shared sidecar host, whose death ends every session on it.
  const { fixture } = standardServers()
  bridge = await startBridge({
    servers: { fixture: { ...fixture, sidecar: 'dedicated' }, shared: fixture! },
  })
})
afterEach(async () => {
  await clients.closeAll()
  killTrees(leftovers.splice(0))
})
afterAll(() => bridge?.close())

/** Runs `open` and returns the sidecar it started (pid) and the server processes behind it. */
const newSidecar = async <T>(open: () => Promise<T>) => {
  const before = new Set(bridge.sidecars().keys())
  const value = await open()
  const added = [...bridge.sidecars()].filter(([name]) => !before.has(name))
  expect(added).toHaveLength(1)
  const sidecar = added[0]![1].pid!
  const servers = descendantsOf(sidecar)
  expect(servers.length).toBeGreaterThanOrEqual(1)
  leftovers.push(sidecar, ...servers)
  return { value, sidecar, servers }
}

const toolsCall = (
  id: number,
  name: string,
  args: Record<string, unknown>,
  progressToken?: string
) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, ...(progressToken ? { _meta: { progressToken } } : {}) },
})

const expectSessionGone = async (url: string, sessionId: string) => {
  const response = await post(
    url,
    { jsonrpc: '2.0', id: 999, method: 'tools/list', params: {} },
    postHeaders(sessionId)
  )
  const body = await response.text()
  expect(response.status, `the bridge answered ${response.status} ${body}`).toBe(404)
}

/** Rejections of `calls`, each checked to be a JSON-RPC error from the bridge, not a timeout. */
const expectAllFailed = async (calls: Promise<unknown>[], pattern: RegExp) => {
  const settled = await Promise.allSettled(calls)
  const fulfilled = settled.filter((s) => s.status === 'fulfilled')
  // A sleep's own result here means the bridge did not notice the crash.
  expect(fulfilled.map((s) => textOf((s as PromiseFulfilledResult<unknown>).value))).toEqual([])
  for (const outcome of settled) {
    const reason = (outcome as PromiseRejectedResult).reason as unknown
    expect(reason).toBeInstanceOf(McpError)
    expect((reason as McpError).code).not.toBe(ErrorCode.RequestTimeout)
    expect((reason as McpError).message).toMatch(pattern)
  }
}

/** A streamed (progress-reporting) call on a raw session, read up to its first progress event. */
const startStreamedCall = async (session: RawSession, id: number) => {
  const response = await session.post(
    toolsCall(id, 'ferry_progress', { count: 100_000, intervalMs: 50 }, `progress-${id}`)
  )
  expect(response.status).toBe(200)
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
  const events = sseEvents(response.body!)
  const messages: JsonRpcMessage[] = []
  for (;;) {
    const next = await events.next()
    if (next.done) throw new Error('the stream ended before any progress')
    if (!next.value.data) continue
    const message = JSON.parse(next.value.data) as JsonRpcMessage
    messages.push(message)
    if (message.method === 'notifications/progress') break
  }
  /** Reads the rest of the stream (it must end, within 15 s) and returns every message on it. */
  const rest = async () => {
    const read = (async () => {
      for await (const event of { [Symbol.asyncIterator]: () => events }) {
        if (event.data) messages.push(JSON.parse(event.data) as JsonRpcMessage)
      }
      return messages
    })()
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the stream did not end')), 15_000)
    })
    try {
      return await Promise.race([read, deadline])
    } finally {
      clearTimeout(timer)
    }
  }
  return { rest }
}

describe('the MCP server exits mid-request', () => {
  it('fails every pending request with a JSON-RPC error, then answers 404', async () => {
    const { value, sidecar, servers } = await newSidecar(() =>
      clients.connect(bridge.url('fixture'))
    )
    const { client, transport } = value
    const sessionId = transport.sessionId!
    const options = { timeout: SDK_TIMEOUT_MS }
    const sleeps = [1, 2].map(() =>
      client.callTool({ name: 'ferry_sleep', arguments: { ms: FOREVER_MS } }, undefined, options)
    )
    const exit = client.callTool(
      { name: 'ferry_exit', arguments: { code: 3, delayMs: 300 } },
      undefined,
      options
    )
    await expectAllFailed([...sleeps, exit], /exit/i)
    await expectSessionGone(bridge.url('fixture'), sessionId)
    expect(await leftBehind([sidecar, ...servers])).toEqual([])
  })

  it('ends a streamed pending request with a JSON-RPC error on its stream', async () => {
    const {
      value: session,
      sidecar,
      servers,
    } = await newSidecar(() => openRawSession(bridge.url('fixture')))
    const streamed = await startStreamedCall(session, 10)
    const exit = await session.post(toolsCall(11, 'ferry_exit', { code: 4, delayMs: 0 }))
    const exitAnswer = (await exit.json()) as JsonRpcMessage
    expect(exitAnswer.id).toBe(11)
    expect(exitAnswer.error?.message).toMatch(/exit/i)
    const messages = await streamed.rest()
    const final = messages.at(-1)!
    expect(final.id).toBe(10)
    expect(final.result).toBeUndefined()
    expect(final.error?.message).toMatch(/exit/i)
    await expectSessionGone(session.url, session.sessionId)
    expect(await leftBehind([sidecar, ...servers])).toEqual([])
  })
})

describe('requests racing the end of a session', () => {
  it('answers 404 (and nothing else) once the server has exited, and the sidecar exits', async () => {
    const {
      value: session,
      sidecar,
      servers,
    } = await newSidecar(() => openRawSession(bridge.url('fixture')))
    const exit = session.post(toolsCall(1, 'ferry_exit', { code: 5, delayMs: 100 }))
    // Requests one after another, straight through the session's shutdown.
    const answers: string[] = []
    let gone = 0
    for (let i = 0; gone < 20 && i < 10_000; i++) {
      const response = await session.post({ jsonrpc: '2.0', id: 100 + i, method: 'ping' })
      const body = await response.text()
      if (response.status === 200 && body.includes('"result"')) continue
      answers.push(`${response.status} ${body}`)
      if (response.status === 404) gone++
    }
    const exitAnswer = (await (await exit).json()) as JsonRpcMessage
    expect(exitAnswer.error?.message).toMatch(/exit/i)
    // The ping in flight when the server exited may get that error (it was pending); every
    // request sent after it must be told the session is gone.
    const [first, ...later] = answers
    expect(first).toMatch(/^(404 |200 .*"error".*exited)/)
    expect(later.filter((answer) => !answer.startsWith('404 '))).toEqual([])
    expect(await leftBehind([sidecar, ...servers])).toEqual([])
  })
})

describe('the sidecar is killed mid-request', () => {
  it('fails every pending request with a JSON-RPC error, then answers 404', async () => {
    const { value, sidecar, servers } = await newSidecar(() =>
      clients.connect(bridge.url('fixture'))
    )
    const { client, transport } = value
    const sessionId = transport.sessionId!
    const options = { timeout: SDK_TIMEOUT_MS }
    const sleeps = [1, 2].map(() =>
      client.callTool({ name: 'ferry_sleep', arguments: { ms: FOREVER_MS } }, undefined, options)
    )
    // A round trip after the sleeps were sent: they have reached the sidecar by now.
    expect(textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'x' } }))).toBe(
      'x'
    )
    expect(isAlive(sidecar)).toBe(true)
    process.kill(-sidecar, 'SIGKILL')
    await expectAllFailed(sleeps, /sidecar|session|lost|connection/i)
    await expectSessionGone(bridge.url('fixture'), sessionId)
    // The server notices its stdin closing and exits too.
    expect(await leftBehind([sidecar, ...servers])).toEqual([])
  })

  it('fails a pending SDK call that already streamed progress', async () => {
    const { value, sidecar, servers } = await newSidecar(() =>
      clients.connect(bridge.url('fixture'))
    )
    const { client, transport } = value
    let progressed: (() => void) | undefined
    const firstProgress = new Promise<void>((resolve) => (progressed = resolve))
    const call = client.callTool(
      { name: 'ferry_progress', arguments: { count: 100_000, intervalMs: 50 } },
      undefined,
      { timeout: 5000, onprogress: () => progressed?.() }
    )
    await firstProgress
    process.kill(-sidecar, 'SIGKILL')
    await expectAllFailed([call], /sidecar|session|lost|connection/i)
    await expectSessionGone(bridge.url('fixture'), transport.sessionId!)
    expect(await leftBehind([sidecar, ...servers])).toEqual([])
  })

  it('ends a streamed pending request with a JSON-RPC error on its stream', async () => {
    const {
      value: session,
      sidecar,
      servers,
    } = await newSidecar(() => openRawSession(bridge.url('fixture')))
    const streamed = await startStreamedCall(session, 20)
    process.kill(-sidecar, 'SIGKILL')
    const messages = await streamed.rest()
    const final = messages.at(-1)!
    // DESIGN.md: "sidecar gone mid-request → JSON-RPC error for every pending request".
    expect(final.method).toBeUndefined()
    expect(final.id).toBe(20)
    expect(final.error?.message).toBeTypeOf('string')
    await expectSessionGone(session.url, session.sessionId)
    expect(await leftBehind([sidecar, ...servers])).toEqual([])
  })
})

describe('the shared sidecar host is killed mid-request', () => {
  it('fails the pending requests of every session on it, then answers 404 to each', async () => {
    const url = bridge.url('shared')
    const before = new Set(bridge.sidecars().keys())
    const sessions = [await clients.connect(url), await clients.connect(url)]
    const hosts = new Set(
      [...bridge.sidecars()].filter(([name]) => !before.has(name)).map(([, child]) => child.pid!)
    )
    // Both sessions run on the one host, each with a server of its own.
    expect(hosts.size).toBe(1)
    const host = [...hosts][0]!
    const servers = descendantsOf(host)
    expect(servers.length).toBeGreaterThanOrEqual(2)
    leftovers.push(host, ...servers)
    const options = { timeout: SDK_TIMEOUT_MS }
    const sleeps = sessions.map(({ client }) =>
      client.callTool({ name: 'ferry_sleep', arguments: { ms: FOREVER_MS } }, undefined, options)
    )
    for (const { client } of sessions) {
      expect(textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'x' } }))).toBe(
        'x'
      )
    }
    process.kill(host, 'SIGKILL')
    await expectAllFailed(sleeps, /sidecar|session|lost|connection/i)
    for (const { transport } of sessions) await expectSessionGone(url, transport.sessionId!)
    // The servers notice their stdin closing and exit too.
    expect(await leftBehind([host, ...servers])).toEqual([])
    // The next session gets a new host.
    const next = await clients.connect(url)
    expect(
      textOf(await next.client.callTool({ name: 'ferry_echo', arguments: { text: 'y' } }))
    ).toBe('y')
  })
})
