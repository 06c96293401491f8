/**
 * @module
 * A property-based fuzz of the bridge's HTTP layer (fast-check): random methods, paths,
 * headers (garbage session ids, Last-Event-ID, protocol versions, content types,
 * Authorization, request ids, origins) and bodies (valid and invalid JSON, JSON-RPC shapes,
 * batches, large strings within the body limit) against a real bridge on 127.0.0.1. The bridge
 * must never answer 5xx, never leak a stack trace or a sidecar address, keep answering
 * `/healthz`, and start sidecars only for valid `initialize` requests (all ended afterwards).
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '@ferry/bridge'
import { type TestBridge, startBridge } from '../helpers/bridge.ts'
import { BOTH, PROTOCOL_VERSION, initializeRequest } from '../helpers/mcp.ts'

const RUNS = 300
const TOKEN = 'ferry_fuzz-token-abcdefghijklmnopqrstuvwxyz0123456789'

let bridge: TestBridge
/** Session ids the bridge handed out (legitimate starts). */
const started = new Set<string>()
const statuses = new Map<number, number>()
let requests = 0

beforeAll(async () => {
  bridge = await startBridge({
    bridge: { bodyLimit: '256KiB' },
    servers: {
      locked: {
        runtime: 'local',
        command: process.execPath,
        args: ['-e', ''],
        auth: { mode: 'bearer', tokens: [{ sha256: await hashToken(TOKEN), principal: 'fuzz' }] },
      },
    },
  })
})

afterAll(async () => {
  await bridge?.close()
})

const printable = (max: number) => fc.stringMatching(new RegExp(`^[ -~]{0,${max}}$`))

/** Mostly `valid`, sometimes `garbage`: most requests get deep enough to reach a session. */
const mostly = <T>(valid: fc.Arbitrary<T>, garbage: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: garbage })

const pathArb = mostly(
  fc.constantFrom('/mcp', '/fixture/mcp', '/fixture/mcp', '/everything/mcp', '/locked/mcp'),
  fc.oneof(
    fc.constantFrom(
      '/nope/mcp',
      '/',
      '/healthz',
      '/readyz',
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/locked/mcp',
      '/fixture/mcp/extra',
      '/%2e%2e/mcp',
      '/fixture/mcp?access_token=x',
      '//mcp'
    ),
    fc.stringMatching(/^\/[A-Za-z0-9._~%/-]{0,40}$/)
  )
)

const sessionIdArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant('__real__') },
  { weight: 2, arbitrary: printable(80) },
  { weight: 1, arbitrary: fc.constantFrom('', 'k1.AAAA', 'x'.repeat(3000)) }
)

const headersArb = fc.record(
  {
    'content-type': mostly(
      fc.constantFrom('application/json', 'application/json; charset=utf-8'),
      fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', '', 'application/json;;;')
    ),
    accept: mostly(
      fc.constant(BOTH),
      fc.constantFrom('application/json', 'text/event-stream', '*/*', '', 'x/y;q=0')
    ),
    'mcp-session-id': sessionIdArb,
    'last-event-id': fc.oneof(printable(40), fc.constantFrom('0', 'r:1:1', 'g:0')),
    'mcp-protocol-version': mostly(
      fc.constantFrom(PROTOCOL_VERSION, '2025-06-18', '2025-03-26'),
      fc.oneof(fc.constant('1999-01-01'), printable(20))
    ),
    authorization: fc.oneof(
      fc.constantFrom(
        `Bearer ${TOKEN}`,
        'Bearer',
        'Bearer a.b.c',
        'Basic Zm9vOmJhcg==',
        'Bearer  '
      ),
      printable(100)
    ),
    origin: mostly(
      fc.constantFrom('http://localhost', 'http://127.0.0.1'),
      fc.constantFrom('https://evil.example', 'null')
    ),
    'x-request-id': fc.oneof(printable(200), fc.uuid()),
  },
  { requiredKeys: ['content-type', 'accept', 'mcp-protocol-version'] }
)

const jsonRpcArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(initializeRequest()) },
  fc.record({
    jsonrpc: fc.constant('2.0'),
    id: fc.oneof(fc.integer(), printable(10), fc.constant(null)),
    method: fc.constantFrom('tools/list', 'ping', 'initialize', 'tools/call', 'nope'),
    params: fc.option(fc.object(), { nil: undefined }),
  }),
  fc.record({ jsonrpc: fc.constant('2.0'), method: fc.constant('notifications/initialized') }),
  fc.record({ jsonrpc: fc.constant('2.0'), id: fc.integer(), result: fc.object() }),
  fc.record({ jsonrpc: fc.constantFrom('1.0', '2.0'), id: fc.integer(), error: fc.anything() })
)

const bodyArb = fc.oneof(
  jsonRpcArb.map((m) => JSON.stringify(m)),
  jsonRpcArb.map((m) => JSON.stringify(m)),
  fc.array(jsonRpcArb, { maxLength: 5 }).map((a) => JSON.stringify(a)),
  fc.json(),
  printable(200),
  fc.constantFrom('', '{', '[]', 'null', '{"jsonrpc":"2.0"}'),
  fc
    .integer({ min: 1_000, max: 200_000 })
    .map((n) =>
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(n) } })
    )
)

const requestArb = fc.record({
  method: mostly(
    fc.constantFrom('GET', 'POST', 'POST', 'POST', 'POST', 'DELETE'),
    fc.constantFrom('PUT', 'OPTIONS', 'PATCH')
  ),
  path: pathArb,
  headers: headersArb,
  body: bodyArb,
})

/** Reads an answer without waiting on a stream that stays open. */
const drain = async (response: Response): Promise<string> => {
  if (response.headers.get('content-type')?.startsWith('text/event-stream')) {
    await response.body?.cancel()
    return ''
  }
  return response.text()
}

describe('HTTP fuzz', () => {
  it(`answers ${RUNS} random requests without 5xx, leaks or stray sidecars`, async () => {
    let realSession: string | undefined
    await fc.assert(
      fc.asyncProperty(requestArb, async ({ method, path, headers, body }) => {
        const sent: Record<string, string> = {}
        for (const [name, value] of Object.entries(headers)) {
          if (value === undefined) continue
          if (name === 'mcp-session-id' && value === '__real__') {
            if (realSession !== undefined) sent[name] = realSession
          } else sent[name] = value
        }
        const hasBody = method !== 'GET' && method !== 'OPTIONS'
        const response = await fetch(`${bridge.origin}${path}`, {
          method,
          headers: sent,
          ...(hasBody ? { body } : {}),
          signal: AbortSignal.timeout(20_000),
        })
        requests++
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
        const sessionId = response.headers.get('mcp-session-id')
        if (sessionId) {
          started.add(sessionId)
          realSession = sessionId
        }
        const text = await drain(response)
        expect(response.status, `${method} ${path} → ${response.status}: ${text}`).toBeLessThan(500)
        expect(text).not.toMatch(/\n\s+at |ws:\/\/|node:internal/)
        expect(response.headers.get('x-content-type-options')).toBe('nosniff')
        expect(response.headers.get('x-request-id')).toBeTruthy()
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31) }
    )
    expect(requests).toBe(RUNS)
    // Still alive.
    expect((await fetch(`${bridge.origin}/healthz`)).status).toBe(200)
    // Only valid initializes started sidecars: never more running than sessions handed out.
    const running = bridge.sidecars()
    expect(running.size).toBeLessThanOrEqual(started.size)
    for (const sessionId of started) {
      for (const server of ['fixture', 'everything', 'locked']) {
        await fetch(`${bridge.origin}/${server}/mcp`, {
          method: 'DELETE',
          headers: { 'mcp-session-id': sessionId, authorization: `Bearer ${TOKEN}` },
        })
      }
    }
    const deadline = Date.now() + 10_000
    while (bridge.sidecars().size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(bridge.sidecars().size).toBe(0)
    console.log(
      `fuzz: ${requests} requests, ${started.size} sessions started, statuses ${JSON.stringify(Object.fromEntries(statuses))}`
    )
  }, 240_000)
})
