/**
 * @module
 * The bridge's HTTP surface, driven Hono-style through `app.request()` without a
 * socket: a real catalog, a real keyring, and real sidecars running the
 * conformance fixture through the local runtime.
 */
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CatalogSchema, ErrorCode, requestStreamKey, silentLogger } from '@ferry/shared'
import { type Bridge, createBridge } from './bridge.ts'
import type { LocalRuntime } from './runtime/local-runtime.ts'
import { Keyring } from './session/keyring.ts'

const FIXTURE = fileURLToPath(new URL('../../test/fixtures/conformance-server.ts', import.meta.url))
const BODY_LIMIT = 4096
const PROTOCOL = '2025-11-25'
const ORIGIN = 'http://localhost'

const makeCatalog = (extra: { defaultServer?: string } = {}) =>
  CatalogSchema.parse({
    bridge: { logLevel: 'silent', bodyLimit: BODY_LIMIT, startTimeout: '15s' },
    ...(extra.defaultServer ? { defaultServer: extra.defaultServer } : {}),
    servers: {
      conf: { runtime: 'local', command: process.execPath, args: [FIXTURE] },
      other: { runtime: 'local', command: process.execPath, args: [FIXTURE] },
      broken: { runtime: 'local', command: '/nonexistent/ferry-test-server' },
    },
  })

const bridges: Bridge[] = []
const newBridge = async (extra: { defaultServer?: string; keyring?: Keyring } = {}) => {
  const bridge = createBridge({
    catalog: makeCatalog({ defaultServer: extra.defaultServer }),
    keyring: extra.keyring ?? (await Keyring.generate()),
    logger: silentLogger,
  })
  bridges.push(bridge)
  return bridge
}

afterAll(async () => {
  for (const bridge of bridges) {
    await (bridge.runtimes.local as LocalRuntime).stopAll()
    await bridge.close()
  }
})

interface JSONRPCBody {
  jsonrpc: '2.0'
  id: string | number | null
  result?: Record<string, unknown>
  error?: { code: number; message: string; data?: unknown }
}

const POST_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
}

const post = (bridge: Bridge, path: string, body: unknown, headers: Record<string, string> = {}) =>
  bridge.app.request(`${ORIGIN}${path}`, {
    method: 'POST',
    headers: { ...POST_HEADERS, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

const initialize = (id: number | string = 1) => ({
  jsonrpc: '2.0',
  id,
  method: 'initialize',
  params: {
    protocolVersion: PROTOCOL,
    capabilities: {},
    clientInfo: { name: 'app-test', version: '1.0.0' },
  },
})

const call = (id: number | string, name: string, meta?: Record<string, unknown>) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: {}, ...(meta ? { _meta: meta } : {}) },
})

const expectJsonError = async (response: Response, status: number, code: number) => {
  expect(response.status).toBe(status)
  expect(response.headers.get('content-type')).toBe('application/json')
  const body = (await response.json()) as JSONRPCBody
  expect(body.jsonrpc).toBe('2.0')
  expect(body.error?.code).toBe(code)
  return body
}

/** Reads a body to its end, giving up (and failing the caller's assertions) after `ms`. */
const readAll = async (response: Response, ms = 10_000): Promise<string> => {
  const reader = response.body!.getReader()
  const timer = setTimeout(() => void reader.cancel(), ms)
  const decoder = new TextDecoder()
  let text = ''
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
    }
  } finally {
    clearTimeout(timer)
  }
  return text
}

interface SseEvent {
  event?: string
  id?: string
  retry?: string
  data?: string
}

/** Splits SSE text into events, keeping every field as written (comments dropped). */
const parseSse = (text: string): SseEvent[] =>
  text
    .split('\n\n')
    .filter((block) => block !== '' && !block.startsWith(':'))
    .map((block) => {
      const event: SseEvent = {}
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':')
        const field = line.slice(0, colon) as keyof SseEvent
        event[field] = line.slice(colon + 1).replace(/^ /, '')
      }
      return event
    })

describe('plain routes', () => {
  let bridge: Bridge
  beforeAll(async () => {
    bridge = await newBridge()
  })

  it('GET /healthz answers 200 ok', async () => {
    const response = await bridge.app.request('/healthz')
    expect(response.status).toBe(200)
    expect(await response.text()).toBe('ok')
  })

  it('GET /readyz answers 200 until the bridge drains, then 503', async () => {
    const draining = await newBridge()
    const before = await draining.app.request('/readyz')
    expect(before.status).toBe(200)
    expect(await before.text()).toBe('ready')
    draining.drain()
    const after = await draining.app.request('/readyz')
    expect(after.status).toBe(503)
    expect(await after.text()).toBe('draining')
    // Liveness is not readiness.
    expect((await draining.app.request('/healthz')).status).toBe(200)
  })

  it('close() also fails readiness', async () => {
    const closing = await newBridge()
    await closing.close()
    expect((await closing.app.request('/readyz')).status).toBe(503)
  })

  it('every response carries the request id, security headers and no-store by default', async () => {
    const given = await bridge.app.request('/healthz', { headers: { 'x-request-id': 'req-7' } })
    expect(given.headers.get('x-request-id')).toBe('req-7')
    const fresh = await bridge.app.request('/nope', { headers: { 'x-request-id': 'bad id' } })
    expect(fresh.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    for (const response of [given, fresh]) {
      expect(response.headers.get('x-content-type-options')).toBe('nosniff')
      expect(response.headers.get('referrer-policy')).toBe('no-referrer')
      expect(response.headers.get('x-frame-options')).toBe('DENY')
      expect(response.headers.get('content-security-policy')).toBe(
        "default-src 'none'; frame-ancestors 'none'"
      )
      expect(response.headers.get('cache-control')).toBe('no-store')
      expect(response.headers.get('access-control-allow-origin')).toBeNull()
    }
  })

  it('an unknown route is a JSON 404', async () => {
    for (const path of ['/nope', '/conf/mcp/extra', '/conf', '/']) {
      const body = await expectJsonError(
        await bridge.app.request(path),
        404,
        ErrorCode.InvalidRequest
      )
      expect(body).toEqual({
        jsonrpc: '2.0',
        id: null,
        error: { code: ErrorCode.InvalidRequest, message: 'Not Found' },
      })
    }
  })

  it('/mcp without a default server is a JSON 404', async () => {
    const body = await expectJsonError(
      await post(bridge, '/mcp', initialize()),
      404,
      ErrorCode.InvalidRequest
    )
    expect(body.error?.message).toMatch(/No default MCP server/)
    await expectJsonError(
      await bridge.app.request('/mcp', { method: 'GET' }),
      404,
      ErrorCode.InvalidRequest
    )
  })

  it('/mcp with a default server reaches that server', async () => {
    const withDefault = await newBridge({ defaultServer: 'conf' })
    // A parse error proves the request got past routing into the MCP handler.
    await expectJsonError(await post(withDefault, '/mcp', '{'), 400, ErrorCode.ParseError)
  })

  it('an unknown server is a JSON 404', async () => {
    const body = await expectJsonError(
      await post(bridge, '/nobody/mcp', initialize()),
      404,
      ErrorCode.InvalidRequest
    )
    expect(body.error?.message).toBe('Unknown MCP server: nobody')
  })
})

describe('request validation on /<server>/mcp', () => {
  let bridge: Bridge
  beforeAll(async () => {
    bridge = await newBridge()
  })

  /** `size` bytes of invalid JSON: passes the limit or not, but never starts a session. */
  const junk = (size: number) => '{' + ' '.repeat(size - 1)

  it('accepts a body of exactly the limit and refuses one byte more with 413', async () => {
    await expectJsonError(
      await post(bridge, '/conf/mcp', junk(BODY_LIMIT)),
      400,
      ErrorCode.ParseError
    )
    const body = await expectJsonError(
      await post(bridge, '/conf/mcp', junk(BODY_LIMIT + 1)),
      413,
      ErrorCode.InvalidRequest
    )
    expect(body.id).toBeNull()
    expect(body.error?.message).toContain(String(BODY_LIMIT))
  })

  it('applies the limit by Content-Length too, counting bytes not characters', async () => {
    const exact = junk(BODY_LIMIT)
    await expectJsonError(
      await post(bridge, '/conf/mcp', exact, { 'content-length': String(BODY_LIMIT) }),
      400,
      ErrorCode.ParseError
    )
    const over = junk(BODY_LIMIT + 1)
    await expectJsonError(
      await post(bridge, '/conf/mcp', over, { 'content-length': String(BODY_LIMIT + 1) }),
      413,
      ErrorCode.InvalidRequest
    )
    // 2-byte characters: BODY_LIMIT / 2 of them fit, one more does not.
    const wide = '{' + 'é'.repeat(BODY_LIMIT / 2 - 1) + ' '
    expect(new TextEncoder().encode(wide).length).toBe(BODY_LIMIT)
    await expectJsonError(await post(bridge, '/conf/mcp', wide), 400, ErrorCode.ParseError)
    await expectJsonError(
      await post(bridge, '/conf/mcp', wide + ' '),
      413,
      ErrorCode.InvalidRequest
    )
  })

  it('a body that is not JSON is 400 -32700 with a null id', async () => {
    const body = await expectJsonError(
      await post(bridge, '/conf/mcp', '{"jsonrpc":'),
      400,
      ErrorCode.ParseError
    )
    expect(body.id).toBeNull()
  })

  it('a batch or a non-JSON-RPC value is 400 -32600', async () => {
    await expectJsonError(
      await post(bridge, '/conf/mcp', [initialize()]),
      400,
      ErrorCode.InvalidRequest
    )
    await expectJsonError(
      await post(bridge, '/conf/mcp', { hello: 1 }),
      400,
      ErrorCode.InvalidRequest
    )
    await expectJsonError(await post(bridge, '/conf/mcp', '42'), 400, ErrorCode.InvalidRequest)
  })

  it('wrong Content-Type is 415, wrong Accept is 406', async () => {
    await expectJsonError(
      await post(bridge, '/conf/mcp', initialize(), { 'content-type': 'text/plain' }),
      415,
      ErrorCode.InvalidRequest
    )
    await expectJsonError(
      await post(bridge, '/conf/mcp', initialize(), { accept: 'application/json' }),
      406,
      ErrorCode.InvalidRequest
    )
    await expectJsonError(
      await bridge.app.request('/conf/mcp', {
        method: 'GET',
        headers: { accept: 'application/json' },
      }),
      406,
      ErrorCode.InvalidRequest
    )
  })

  it('an unsupported MCP-Protocol-Version is 400 -32022 naming the supported ones', async () => {
    const body = await expectJsonError(
      await post(bridge, '/conf/mcp', initialize(), { 'mcp-protocol-version': '2026-07-28' }),
      400,
      ErrorCode.UnsupportedProtocolVersion
    )
    expect(body.error?.data).toEqual({
      supported: ['2025-11-25', '2025-06-18', '2025-03-26'],
      requested: '2026-07-28',
    })
  })

  it('a foreign Origin or Host is 403', async () => {
    await expectJsonError(
      await post(bridge, '/conf/mcp', initialize(), { origin: 'http://evil.example' }),
      403,
      ErrorCode.InvalidRequest
    )
    await expectJsonError(
      await post(bridge, '/conf/mcp', initialize(), { host: 'evil.example' }),
      403,
      ErrorCode.InvalidRequest
    )
  })

  it('other methods are 405 with Allow', async () => {
    const response = await bridge.app.request('/conf/mcp', { method: 'PUT', body: '{}' })
    await expectJsonError(response, 405, ErrorCode.InvalidRequest)
    expect(response.headers.get('allow')).toBe('GET, POST, DELETE')
  })

  it('a non-initialize request without a session id is 400', async () => {
    const body = await expectJsonError(
      await post(bridge, '/conf/mcp', call(1, 'test_simple_text')),
      400,
      ErrorCode.InvalidRequest
    )
    expect(body.error?.message).toMatch(/Mcp-Session-Id/)
    await expectJsonError(
      await bridge.app.request('/conf/mcp', { method: 'DELETE' }),
      400,
      ErrorCode.InvalidRequest
    )
  })

  it('a session id that is not ours is 404 -32001', async () => {
    for (const id of ['garbage', 'k.AAAA', 'x'.repeat(3000)]) {
      await expectJsonError(
        await post(bridge, '/conf/mcp', call(1, 'test_simple_text'), { 'mcp-session-id': id }),
        404,
        ErrorCode.SessionNotFound
      )
    }
  })
})

describe('a session through the bridge', () => {
  let bridge: Bridge
  let keyring: Keyring
  let sessionId: string
  const headers = () => ({ 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL })

  beforeAll(async () => {
    keyring = await Keyring.generate()
    bridge = await newBridge({ keyring })
  })

  it('initialize answers 200 JSON with a fresh Mcp-Session-Id', async () => {
    const response = await post(bridge, '/conf/mcp', initialize(1))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json')
    sessionId = response.headers.get('mcp-session-id')!
    expect(sessionId).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    const body = (await response.json()) as JSONRPCBody
    expect(body.id).toBe(1)
    expect(body.result?.protocolVersion).toBe(PROTOCOL)
    expect(body.result?.serverInfo).toMatchObject({ name: 'ferry-conformance-fixture' })
    expect(bridge.runtimes.local!.activeSessions()).toBe(1)
  })

  it('notifications/initialized answers 202 with no body', async () => {
    const response = await post(
      bridge,
      '/conf/mcp',
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      headers()
    )
    expect(response.status).toBe(202)
    expect(await response.text()).toBe('')
  })

  it('tools/call test_simple_text answers 200 JSON with the result', async () => {
    const response = await post(bridge, '/conf/mcp', call(2, 'test_simple_text'), headers())
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json')
    expect(await response.json()).toEqual({
      jsonrpc: '2.0',
      id: 2,
      result: { content: [{ type: 'text', text: 'This is a simple text response for testing.' }] },
    })
  })

  it('a call that reports progress answers an SSE stream: priming, progress, result, end', async () => {
    const response = await post(
      bridge,
      '/conf/mcp',
      call(3, 'test_tool_with_progress', { progressToken: 'tok-3' }),
      headers()
    )
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    // The stream's own cache policy stays; the standard headers come with it.
    expect(response.headers.get('cache-control')).toBe('no-cache, no-transform')
    expect(response.headers.get('x-content-type-options')).toBe('nosniff')
    expect(response.headers.get('mcp-session-id')).toBeNull()
    const text = await readAll(response)
    const stream = requestStreamKey(3)
    // The priming event comes first, exactly as written.
    expect(text.startsWith(`id: ${stream}.0\nretry: 1000\ndata: \n\n`)).toBe(true)
    const events = parseSse(text)
    expect(events[0]).toEqual({ id: `${stream}.0`, retry: '1000', data: '' })
    const rest = events.slice(1)
    expect(rest.map((e) => e.id)).toEqual([1, 2, 3, 4].map((seq) => `${stream}.${seq}`))
    expect(rest.every((e) => e.event === 'message')).toBe(true)
    const messages = rest.map((e) => JSON.parse(e.data!) as Record<string, unknown>)
    expect(messages.slice(0, 3)).toEqual(
      [0, 50, 100].map((progress) => ({
        jsonrpc: '2.0',
        method: 'notifications/progress',
        params: { progressToken: 'tok-3', progress, total: 100 },
      }))
    )
    expect(messages[3]).toEqual({
      jsonrpc: '2.0',
      id: 3,
      result: { content: [{ type: 'text', text: 'Tool with progress executed successfully' }] },
    })
  })

  it('any bridge with the same keyring serves the session; another keyring does not know it', async () => {
    const replica = await newBridge({ keyring })
    const response = await post(replica, '/conf/mcp', call(40, 'test_simple_text'), headers())
    expect(response.status).toBe(200)
    expect(((await response.json()) as JSONRPCBody).id).toBe(40)
    const stranger = await newBridge()
    await expectJsonError(
      await post(stranger, '/conf/mcp', call(41, 'test_simple_text'), headers()),
      404,
      ErrorCode.SessionNotFound
    )
  })

  it('a request id still in flight in the session is refused', async () => {
    const slow = {
      ...call(40, 'ferry_sleep'),
      params: { name: 'ferry_sleep', arguments: { ms: 1000 } },
    }
    const first = post(bridge, '/conf/mcp', slow, headers())
    // The sidecar has the first request once the server was told to start it.
    await new Promise((resolve) => setTimeout(resolve, 100))
    const body = await expectJsonError(
      await post(bridge, '/conf/mcp', call(40, 'test_simple_text'), headers()),
      200,
      ErrorCode.InvalidRequest
    )
    expect(body.id).toBe(40)
    expect(body.error?.message).toMatch(/already in flight/)
    expect(((await (await first).json()) as JSONRPCBody).result).toBeDefined()
  })

  it('the session id only works on its own server', async () => {
    await expectJsonError(
      await post(bridge, '/other/mcp', call(4, 'test_simple_text'), headers()),
      404,
      ErrorCode.SessionNotFound
    )
  })

  it('initialize with a session id is refused', async () => {
    await expectJsonError(
      await post(bridge, '/conf/mcp', initialize(5), headers()),
      400,
      ErrorCode.InvalidRequest
    )
  })

  it('GET opens the standalone SSE stream', async () => {
    const response = await bridge.app.request('/conf/mcp', {
      method: 'GET',
      headers: { accept: 'text/event-stream', ...headers() },
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    await response.body!.cancel()
  })

  it('DELETE ends the session: 200, then 404 for everything', async () => {
    const deleted = await bridge.app.request('/conf/mcp', { method: 'DELETE', headers: headers() })
    expect(deleted.status).toBe(200)
    await expectJsonError(
      await bridge.app.request('/conf/mcp', { method: 'DELETE', headers: headers() }),
      404,
      ErrorCode.SessionNotFound
    )
    await expectJsonError(
      await post(bridge, '/conf/mcp', call(6, 'test_simple_text'), headers()),
      404,
      ErrorCode.SessionNotFound
    )
    await expectJsonError(
      await post(
        bridge,
        '/conf/mcp',
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        headers()
      ),
      404,
      ErrorCode.SessionNotFound
    )
    // The sidecar stops the server and exits; the runtime forgets it.
    const deadline = Date.now() + 10_000
    while (bridge.runtimes.local!.activeSessions() > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(bridge.runtimes.local!.activeSessions()).toBe(0)
  })

  it('a workload that fails to start answers a JSON-RPC error on initialize and no session id', async () => {
    const response = await post(bridge, '/broken/mcp', initialize(7))
    expect(response.status).toBe(200)
    expect(response.headers.get('mcp-session-id')).toBeNull()
    const body = (await response.json()) as JSONRPCBody
    expect(body.id).toBe(7)
    expect(body.error?.code).toBe(ErrorCode.ServerError)
    expect(body.error?.message).toMatch(
      /^Session start failed: the session's server could not start: .*ENOENT/
    )
  })
})

describe('a session on an older revision', () => {
  it('gets SSE without the priming event before 2025-11-25', async () => {
    const bridge = await newBridge()
    const init = await post(bridge, '/conf/mcp', {
      ...initialize(1),
      params: { ...initialize(1).params, protocolVersion: '2025-06-18' },
    })
    expect(((await init.json()) as JSONRPCBody).result?.protocolVersion).toBe('2025-06-18')
    const headers = {
      'mcp-session-id': init.headers.get('mcp-session-id')!,
      'mcp-protocol-version': '2025-06-18',
    }
    const response = await post(
      bridge,
      '/conf/mcp',
      call('p', 'test_tool_with_progress', { progressToken: 1 }),
      headers
    )
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    const events = parseSse(await readAll(response))
    const stream = requestStreamKey('p')
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4].map((seq) => `${stream}.${seq}`))
    expect(events.some((e) => e.retry !== undefined)).toBe(false)
    expect(JSON.parse(events[3]!.data!)).toMatchObject({ id: 'p', result: {} })
  })
})
