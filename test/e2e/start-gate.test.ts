/**
 * @module test/e2e/start-gate
 *
 * `bridge.local.maxConcurrentStarts` against a real bridge and real server processes: with the
 * limit taken by a server that has not finished booting, the next start waits (seen on the
 * `ferry_session_starts_waiting` gauge) without spawning anything, goes on once the slot frees,
 * fails with the start timeout if that comes first, and gives up its place when its client
 * does. `0` lets every start boot at once.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { fixturePath, startBridge, type TestBridge } from '../helpers/bridge.ts'
import { processesWith } from '../helpers/processes.ts'
import { initializeRequest, post, postHeaders, responseOf } from '../helpers/mcp.ts'

const MARKER = `ferry-start-gate-${process.pid}`
const dir = mkdtempSync(join(tmpdir(), 'ferry-start-gate-'))
/** The booting server finishes its boot once this file exists. */
const go = join(dir, 'go')

/** A server whose boot lasts until the `go` file exists; then it is the conformance fixture. */
const booting = {
  runtime: 'local',
  command: process.execPath,
  args: [
    '-e',
    `const t = setInterval(() => { if (require('node:fs').existsSync(${JSON.stringify(go)})) { clearInterval(t); import(${JSON.stringify(fixturePath)}) } }, 10) //${MARKER}-booting`,
  ],
}
/** The conformance fixture, tagged so its processes can be found. */
const quick = (tag: string, extra: Record<string, unknown> = {}) => ({
  runtime: 'local',
  command: process.execPath,
  args: [fixturePath, `${MARKER}-${tag}`],
  ...extra,
})

const initialize = (bridge: TestBridge, server: string, signal?: AbortSignal) =>
  post(bridge.url(server), initializeRequest(), postHeaders(), signal)

const waitingStarts = async (bridge: TestBridge): Promise<number> => {
  const text = await (await fetch(`${bridge.origin}/metrics`)).text()
  const line = /^ferry_session_starts_waiting\{ferry_runtime="local"\} (\d+)$/m.exec(text)
  return Number(line?.[1] ?? Number.NaN)
}

/**
 * Starts a session of `booting` and waits until its server process runs (holding its slot).
 * The answer comes wrapped: returned bare, it would be awaited, and it comes after the boot.
 */
const holdSlot = async (bridge: TestBridge): Promise<{ answer: Promise<Response> }> => {
  const answer = initialize(bridge, 'booting')
  await vi.waitFor(() => expect(processesWith(`${MARKER}-booting`)).not.toEqual([]), {
    timeout: 10_000,
  })
  return { answer }
}

const expectStarted = async (answer: Promise<Response>) => {
  const response = await answer
  expect(response.status).toBe(200)
  expect(response.headers.get('mcp-session-id')).toBeTruthy()
  expect((await responseOf(response)).result?.protocolVersion).toBeTypeOf('string')
}

afterEach(() => rmSync(go, { force: true }))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('maxConcurrentStarts: 1', () => {
  let bridge: TestBridge
  beforeAll(async () => {
    bridge = await startBridge({
      bridge: { local: { maxConcurrentStarts: 1 } },
      servers: {
        booting,
        waiter: quick('waiter'),
        impatient: quick('impatient', { startTimeout: '300ms' }),
        abandoned: quick('abandoned'),
      },
    })
  })
  afterAll(() => bridge?.close())

  it('holds the next start back, spawning nothing, until the booting one is answered', async () => {
    const { answer: first } = await holdSlot(bridge)
    const second = initialize(bridge, 'waiter')
    await vi.waitFor(async () => expect(await waitingStarts(bridge)).toBe(1), { timeout: 10_000 })
    expect(processesWith(`${MARKER}-waiter`)).toEqual([])
    writeFileSync(go, '')
    await expectStarted(first)
    await expectStarted(second)
    expect(processesWith(`${MARKER}-waiter`)).toHaveLength(1)
    expect(await waitingStarts(bridge)).toBe(0)
  })

  it('fails a start whose timeout comes while it waits, with the timeout, starting nothing', async () => {
    const { answer: first } = await holdSlot(bridge)
    const response = await initialize(bridge, 'impatient')
    expect(response.status).toBe(200)
    expect((await responseOf(response)).error?.message).toBe(
      'Session start failed: the session did not become ready within 300 ms'
    )
    expect(response.headers.get('mcp-session-id')).toBeNull()
    expect(processesWith(`${MARKER}-impatient`)).toEqual([])
    expect(await waitingStarts(bridge)).toBe(0)
    writeFileSync(go, '')
    await expectStarted(first)
  })

  it('gives up the place of a client that went away, starting nothing for it', async () => {
    const { answer: first } = await holdSlot(bridge)
    const client = new AbortController()
    const gone = initialize(bridge, 'abandoned', client.signal).catch((error: Error) => error)
    await vi.waitFor(async () => expect(await waitingStarts(bridge)).toBe(1), { timeout: 10_000 })
    client.abort()
    expect(await gone).toBeInstanceOf(Error)
    await vi.waitFor(async () => expect(await waitingStarts(bridge)).toBe(0), { timeout: 10_000 })
    writeFileSync(go, '')
    await expectStarted(first)
    // The next start is admitted at once: the abandoned one holds nothing.
    await expectStarted(initialize(bridge, 'waiter'))
    expect(processesWith(`${MARKER}-abandoned`)).toEqual([])
  })
})

describe('maxConcurrentStarts: 0', () => {
  it('boots every start at once', async () => {
    const bridge = await startBridge({
      bridge: { local: { maxConcurrentStarts: 0 } },
      servers: { booting, other: quick('other') },
    })
    try {
      const { answer: first } = await holdSlot(bridge)
      await expectStarted(initialize(bridge, 'other'))
      expect(existsSync(go)).toBe(false)
      writeFileSync(go, '')
      await expectStarted(first)
    } finally {
      await bridge.close()
    }
  })
})
