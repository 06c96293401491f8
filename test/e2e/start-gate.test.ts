/**
 * @module test/e2e/start-gate
 *
 * `bridge.local.maxConcurrentStarts` against a real bridge and real server processes: with the
 * limit taken by a server that has not finished booting, the next start waits (seen on the
 * `ferry_session_starts_waiting` gauge) without spawning anything, goes on once the slot frees,
 * fails with the start timeout if that comes first, and gives up its place when its client
 * does. `0` lets every start boot at once.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { fixturePath, startBridge, type TestBridge } from '../helpers/bridge.ts'
import { processesWith } from '../helpers/processes.ts'
import { initializeRequest, post, postHeaders, responseOf } from '../helpers/mcp.ts'

const MARKER = `ferry-start-gate-${process.pid}`
const dir = mkdtempSync(join(tmpdir(), 'ferry-start-gate-'))
/** The booting server finishes its boot once this file exists. */
const go = join(dir, 'go')

/**
 * A server whose boot lasts until the `go` file exists; then it is the conformance fixture. Each
 * test boots its own (`tag`), so a server of an earlier test is never taken for it.
 */
const booting = (tag: string) => ({
  runtime: 'local',
  command: process.execPath,
  args: [
    '-e',
    `const t = setInterval(() => { if (require('node:fs').existsSync(${JSON.stringify(go)})) { clearInterval(t); import(${JSON.stringify(fixturePath)}) } }, 10) //${MARKER}-${tag}`,
  ],
})
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
 * Starts `count` sessions of the booting server `tag` and waits until all their server processes
 * run (each holding a slot). The answers come wrapped: returned bare, they would be awaited, and
 * they come after the boot.
 */
const holdSlots = async (
  bridge: TestBridge,
  tag: string,
  count = 1
): Promise<{ answers: Promise<Response>[] }> => {
  const answers = Array.from({ length: count }, () => initialize(bridge, tag))
  await vi.waitFor(() => expect(processesWith(`${MARKER}-${tag}`)).toHaveLength(count), {
    timeout: 10_000,
  })
  return { answers }
}

/** {@link holdSlots} for one start. */
const holdSlot = async (bridge: TestBridge, tag: string) => ({
  answer: (await holdSlots(bridge, tag)).answers[0]!,
})

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
        'booting-wait': booting('booting-wait'),
        'booting-timeout': booting('booting-timeout'),
        'booting-abandon': booting('booting-abandon'),
        waiter: quick('waiter'),
        impatient: quick('impatient', { startTimeout: '300ms' }),
        abandoned: quick('abandoned'),
      },
    })
  })
  afterAll(() => bridge?.close())

  it('holds the next start back, spawning nothing, until the booting one is answered', async () => {
    const { answer: first } = await holdSlot(bridge, 'booting-wait')
    const second = initialize(bridge, 'waiter')
    await vi.waitFor(async () => expect(await waitingStarts(bridge)).toBe(1), { timeout: 10_000 })
    expect(processesWith(`${MARKER}-waiter`)).toEqual([])
    writeFileSync(go, '')
    await expectStarted(first)
    await expectStarted(second)
    expect(processesWith(`${MARKER}-waiter`)).toHaveLength(1)
    expect(await waitingStarts(bridge)).toBe(0)
  })

  it('fails a start whose timeout comes while it waits, saying so, starting nothing', async () => {
    const { answer: first } = await holdSlot(bridge, 'booting-timeout')
    const answer = initialize(bridge, 'impatient')
    await vi.waitFor(async () => expect(await waitingStarts(bridge)).toBe(1), { timeout: 10_000 })
    const response = await answer
    expect(response.status).toBe(200)
    expect((await responseOf(response)).error?.message).toBe(
      "Session start failed: no turn to start within the 300 ms start timeout: other sessions' starts held every slot (bridge.local.maxConcurrentStarts: 1), so the server was not started"
    )
    expect(response.headers.get('mcp-session-id')).toBeNull()
    expect(processesWith(`${MARKER}-impatient`)).toEqual([])
    expect(await waitingStarts(bridge)).toBe(0)
    writeFileSync(go, '')
    await expectStarted(first)
  })

  it('gives up the place of a client that went away, starting nothing for it', async () => {
    const { answer: first } = await holdSlot(bridge, 'booting-abandon')
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
  it('boots every start at once, more than the default limit', async () => {
    const held = availableParallelism() + 2
    const bridge = await startBridge({
      bridge: { local: { maxConcurrentStarts: 0 } },
      servers: { 'booting-many': booting('booting-many'), other: quick('other') },
    })
    try {
      const { answers } = await holdSlots(bridge, 'booting-many', held)
      await expectStarted(initialize(bridge, 'other'))
      writeFileSync(go, '')
      for (const answer of answers) await expectStarted(answer)
    } finally {
      await bridge.close()
    }
  })
})
