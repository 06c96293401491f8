/**
 * @module test/e2e/errors
 *
 * One test per row of the design's "Errors and bad input" table (`DESIGN.md`), with raw HTTP
 * against a real bridge, so status codes, headers and JSON-RPC error bodies are seen exactly.
 * "Sidecar gone mid-request" is in `crash.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring } from '@ferry/bridge'
import { descendantsOf, isAlive, leftBehind, processesWith } from '../helpers/processes.ts'
import { startBridge, type TestBridge } from '../helpers/bridge.ts'
import {
  PROTOCOL_VERSION,
  type JsonRpcMessage,
  type RawSession,
  httpRequest,
  initializeRequest,
  openRawSession,
  post,
  postHeaders,
} from '../helpers/mcp.ts'

const BODY_LIMIT = 1024
const SUPPORTED = ['2025-11-25', '2025-06-18', '2025-03-26']

let bridge: TestBridge
let session: RawSession

const LATE = {
  runtime: 'local',
  command: process.execPath,
  args: ['-e', 'setTimeout(() => process.exit(3), 300); process.stdin.resume()'],
}
const SILENT = {
  runtime: 'local',
  command: process.execPath,
  args: ['-e', 'setInterval(() => {}, 1000)'],
  startTimeout: '500ms',
}
const MARKER = `ferry-errors-${process.pid}`

beforeAll(async () => {
  bridge = await startBridge({
    bridge: { bodyLimit: '1kb' },
    servers: {
      missing: { runtime: 'local', command: '/nonexistent/ferry-no-such-command' },
      early: { runtime: 'local', command: process.execPath, args: ['-e', 'process.exit(3)'] },
      // Dedicated sidecars, so each failed start has a sidecar process of its own to watch.
      late: { ...LATE, sidecar: 'dedicated' },
      silent: { ...SILENT, sidecar: 'dedicated' },
      // The same behind the shared sidecar host, tagged to find their server processes.
      'late-shared': { ...LATE, args: [...LATE.args.slice(0, 2), `${LATE.args[2]}//${MARKER}`] },
      'silent-shared': {
        ...SILENT,
        args: [...SILENT.args.slice(0, 2), `${SILENT.args[2]}//${MARKER}`],
      },
    },
  })
  session = await openRawSession(bridge.url('fixture'))
})
afterAll(() => bridge?.close())

const toolsList = (id: number | string = 1) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/list',
  params: {},
})

/** Checks an HTTP-level error: the status and an id-less JSON-RPC error body. */
const expectHttpError = async (
  response: Response,
  status: number,
  code?: number
): Promise<JsonRpcMessage> => {
  expect(response.status).toBe(status)
  expect(response.headers.get('content-type')).toMatch(/^application\/json/)
  const body = (await response.json()) as JsonRpcMessage
  expect(body.jsonrpc).toBe('2.0')
  expect(body.id).toBeNull()
  expect(body.error?.message).toBeTypeOf('string')
  if (code !== undefined) expect(body.error?.code).toBe(code)
  return body
}

describe('body not JSON', () => {
  it('answers 400 with JSON-RPC -32700 and no id', async () => {
    const response = await session.post('{"jsonrpc": "2.0", "id": 1, "method": ')
    await expectHttpError(response, 400, -32700)
  })
})

describe('not a JSON-RPC message / batch where the era forbids it', () => {
  it.each([
    ['an object without jsonrpc', { hello: 'world' }],
    ['a wrong jsonrpc version', { jsonrpc: '1.0', id: 1, method: 'tools/list' }],
    ['a number', 42],
    ['a string', 'tools/list'],
    ['null', null],
  ])('answers 400 with -32600 for %s', async (_what, body) => {
    const response = await session.post(JSON.stringify(body))
    await expectHttpError(response, 400, -32600)
  })

  it.each(['2025-11-25', '2025-06-18'])(
    'answers 400 with -32600 for a batch on a %s session',
    async (version) => {
      const raw = await openRawSession(bridge.url('fixture'), version)
      expect(raw.protocolVersion).toBe(version)
      const response = await raw.post([toolsList(1), { jsonrpc: '2.0', id: 2, method: 'ping' }])
      await expectHttpError(response, 400, -32600)
      // The session is unharmed.
      expect((await raw.request('ping')).result).toEqual({})
    }
  )
})

describe('body over the limit', () => {
  /** A notification padded to exactly `bytes` bytes (ASCII, so bytes = characters). */
  const paddedNotification = (bytes: number) => {
    const base = JSON.stringify({
      jsonrpc: '2.0',
      method: 'notifications/ferry_padding',
      params: { pad: '' },
    })
    const body = base.replace('"pad":""', `"pad":"${'x'.repeat(bytes - base.length)}"`)
    expect(Buffer.byteLength(body)).toBe(bytes)
    return body
  }

  it('accepts a body of exactly the limit', async () => {
    const response = await session.post(paddedNotification(BODY_LIMIT))
    expect(response.status).toBe(202)
  })

  it('answers 413 for a body one byte over the limit', async () => {
    const response = await session.post(paddedNotification(BODY_LIMIT + 1))
    expect(response.status).toBe(413)
    await response.body?.cancel()
  })

  it('answers 413 for a chunked body (no Content-Length) over the limit', async () => {
    const body = paddedNotification(BODY_LIMIT + 1)
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        const bytes = new TextEncoder().encode(body)
        controller.enqueue(bytes.slice(0, 500))
        controller.enqueue(bytes.slice(500))
        controller.close()
      },
    })
    const response = await fetch(session.url, {
      method: 'POST',
      headers: session.headers(),
      body: stream,
      duplex: 'half',
    } as RequestInit)
    expect(response.status).toBe(413)
    await response.body?.cancel()
  })
})

describe('wrong Content-Type / Accept', () => {
  it('answers 415 for a POST that is not application/json', async () => {
    const response = await session.post(toolsList(), { 'content-type': 'text/plain' })
    await expectHttpError(response, 415)
  })

  it.each(['application/json', 'text/event-stream', 'text/html'])(
    'answers 406 for a POST accepting only %s',
    async (accept) => {
      const response = await session.post(toolsList(), { accept })
      await expectHttpError(response, 406)
    }
  )

  it('answers 406 for a GET that does not accept text/event-stream', async () => {
    const response = await fetch(session.url, {
      method: 'GET',
      headers: { ...session.headers(), accept: 'application/json' },
    })
    await expectHttpError(response, 406)
  })
})

describe('unsupported MCP-Protocol-Version', () => {
  it('answers 400 naming the supported versions', async () => {
    const response = await session.post(toolsList(), { 'mcp-protocol-version': '1999-01-01' })
    const body = await expectHttpError(response, 400)
    for (const version of SUPPORTED) expect(body.error?.message).toContain(version)
  })

  it('answers a 2026-07-28 server/discover with 400, -32022 and error.data.supported', async () => {
    const response = await post(
      bridge.url('fixture'),
      { jsonrpc: '2.0', id: 1, method: 'server/discover', params: {} },
      postHeaders(undefined, { 'mcp-protocol-version': '2026-07-28' })
    )
    expect(response.headers.get('mcp-session-id')).toBeNull()
    const body = await expectHttpError(response, 400, -32022)
    const data = body.error?.data as { supported?: unknown }
    expect(data.supported).toEqual(expect.arrayContaining(SUPPORTED))
    expect(data.supported).not.toContain('2026-07-28')
  })
})

describe('Origin / Host not allowed (DNS rebinding)', () => {
  it('answers 403 for Origin http://evil.example.com', async () => {
    const response = await session.post(toolsList(), { origin: 'http://evil.example.com' })
    await expectHttpError(response, 403)
  })

  it('answers 403 for an initialize from Origin http://evil.example.com, starting nothing', async () => {
    const before = bridge.sidecars().size
    const response = await post(
      bridge.url('fixture'),
      initializeRequest(),
      postHeaders(undefined, { origin: 'http://evil.example.com' })
    )
    expect(response.headers.get('mcp-session-id')).toBeNull()
    await expectHttpError(response, 403)
    expect(bridge.sidecars().size).toBe(before)
  })

  it('answers 403 for Host: evil.example.com', async () => {
    const response = await httpRequest({
      port: bridge.port,
      path: '/fixture/mcp',
      method: 'POST',
      headers: { ...session.headers(), host: 'evil.example.com' },
      body: JSON.stringify(toolsList()),
    })
    expect(response.status).toBe(403)
    const body = JSON.parse(response.body) as JsonRpcMessage
    expect(body.id).toBeNull()
    expect(body.error?.message).toBeTypeOf('string')
  })

  it('lets a loopback tool origin (http://localhost:6274) through', async () => {
    const response = await session.post(toolsList(7), { origin: 'http://localhost:6274' })
    expect(response.status).toBe(200)
    const body = (await response.json()) as JsonRpcMessage
    expect(body.id).toBe(7)
    expect(body.result?.tools).toBeInstanceOf(Array)
  })
})

describe('missing session id on a non-initialize request', () => {
  it('answers 400 for a POST', async () => {
    const response = await post(bridge.url('fixture'), toolsList(), postHeaders())
    await expectHttpError(response, 400)
  })

  it('answers 400 for a GET', async () => {
    const response = await fetch(bridge.url('fixture'), {
      headers: { accept: 'text/event-stream', 'mcp-protocol-version': PROTOCOL_VERSION },
    })
    await expectHttpError(response, 400)
  })
})

describe('unknown, tampered, ended or foreign session id', () => {
  const expectNotFound = async (sessionId: string, url = bridge.url('fixture')) => {
    const response = await post(url, toolsList(), postHeaders(sessionId))
    await expectHttpError(response, 404)
  }

  it('answers 404 for an unknown session id', async () => {
    await expectNotFound('not-a-session-id')
    await expectNotFound('A'.repeat(120))
  })

  it('answers 404 for a tampered session id', async () => {
    const id = session.sessionId
    for (const at of [Math.floor(id.length / 2), id.length - 1, 8]) {
      const flipped = id[at] === 'A' ? 'B' : 'A'
      await expectNotFound(id.slice(0, at) + flipped + id.slice(at + 1))
    }
    await expectNotFound(id.slice(0, -4))
    await expectNotFound(`${id}AAAA`)
  })

  it('answers 404 for an ended session id (POST, GET and DELETE)', async () => {
    const ended = await openRawSession(bridge.url('fixture'))
    expect((await ended.close()).status).toBe(200)
    await expectNotFound(ended.sessionId)
    const get = await fetch(ended.url, {
      headers: { ...ended.headers(), accept: 'text/event-stream' },
    })
    await expectHttpError(get, 404)
    const again = await ended.close()
    await expectHttpError(again, 404)
  })

  it('answers 404 for a session id minted under another keyring', async () => {
    const other = await startBridge({ keyring: await Keyring.generate() })
    try {
      const foreign = await openRawSession(other.url('fixture'))
      await expectNotFound(foreign.sessionId)
      // It is a real session on the bridge that minted it.
      expect((await foreign.request('ping')).result).toEqual({})
    } finally {
      await other.close()
    }
  })

  it('answers 404 for a session id used on another server path', async () => {
    await expectNotFound(session.sessionId, bridge.url('everything'))
    await expectNotFound(session.sessionId, bridge.url())
  })
})

describe('unknown server name', () => {
  it('answers 404 for an initialize to /nope/mcp', async () => {
    const response = await post(`${bridge.origin}/nope/mcp`, initializeRequest(), postHeaders())
    expect(response.headers.get('mcp-session-id')).toBeNull()
    await expectHttpError(response, 404)
  })

  it('answers 404 for a GET to /nope/mcp', async () => {
    const response = await fetch(`${bridge.origin}/nope/mcp`, {
      headers: { accept: 'text/event-stream' },
    })
    await expectHttpError(response, 404)
  })
})

describe('second initialize on a live session', () => {
  it('answers 400', async () => {
    const response = await session.post(initializeRequest(PROTOCOL_VERSION, 77))
    expect(response.headers.get('mcp-session-id')).toBeNull()
    expect(response.status).toBe(400)
    const body = (await response.json()) as JsonRpcMessage
    expect(body.error?.message).toBeTypeOf('string')
    // The session is unharmed.
    expect((await session.request('ping')).result).toEqual({})
  })
})

describe('workload failed to start', () => {
  /** New dedicated sidecars (and the servers behind them) since this was called. */
  const newSidecars = () => {
    const before = new Set(bridge.sidecars().keys())
    return () =>
      [...bridge.sidecars()]
        .filter(([name, child]) => !before.has(name) && child.pid)
        .flatMap(([, child]) => [child.pid!, ...descendantsOf(child.pid!)])
  }

  /** Initializes `server`, watching which processes `watched` lists meanwhile. */
  const failedInitialize = async (server: string, watched = newSidecars()) => {
    const seen = new Set<number>()
    const watch = setInterval(() => {
      for (const pid of watched()) seen.add(pid)
    }, 10)
    try {
      const response = await post(
        bridge.url(server),
        initializeRequest(PROTOCOL_VERSION, 5),
        postHeaders()
      )
      expect(response.headers.get('mcp-session-id')).toBeNull()
      expect(response.headers.get('content-type')).toMatch(/^application\/json/)
      const body = (await response.json()) as JsonRpcMessage
      expect(body.id).toBe(5)
      expect(body.result).toBeUndefined()
      expect(body.error?.code).toBeTypeOf('number')
      return { body, pids: [...seen] }
    } finally {
      clearInterval(watch)
    }
  }

  it('answers a JSON-RPC error naming the reason when the command does not exist', async () => {
    const { body } = await failedInitialize('missing')
    expect(body.error?.message).toMatch(/ferry-no-such-command|ENOENT|not found|no such file/i)
  })

  it('answers a JSON-RPC error when the server exits at once', async () => {
    const { body } = await failedInitialize('early')
    expect(body.error?.message).toMatch(/\S/)
  })

  it('answers a JSON-RPC error naming the exit when the server exits before answering initialize', async () => {
    const { body, pids } = await failedInitialize('late')
    expect(body.error?.message).toMatch(/exit/i)
    expect(body.error?.message).toContain('3')
    expect(await leftBehind(pids, 10_000)).toEqual([])
  })

  it('answers a JSON-RPC error naming the timeout, and leaves no process behind', async () => {
    const { body, pids } = await failedInitialize('silent')
    expect(body.error?.message).toMatch(/500 ?ms|time/i)
    // The sidecar and the server behind it were running while the bridge waited...
    expect(pids.length).toBeGreaterThanOrEqual(2)
    // ...and are gone afterwards.
    expect(await leftBehind(pids, 10_000)).toEqual([])
    expect(pids.some(isAlive)).toBe(false)
  })

  it.each(['late-shared', 'silent-shared'])(
    'behind the shared sidecar host, %s leaves no server process behind',
    async (server) => {
      const { body, pids } = await failedInitialize(server, () => processesWith(MARKER))
      expect(body.error?.message).toMatch(server === 'late-shared' ? /exit.*3/i : /500 ?ms|time/i)
      expect(pids.length).toBeGreaterThanOrEqual(1)
      expect(await leftBehind(pids, 10_000)).toEqual([])
    }
  )

  it('keeps serving other sessions after failed starts', async () => {
    expect((await session.request('ping')).result).toEqual({})
  })
})

describe('other methods, notifications, health', () => {
  it.each(['PUT', 'PATCH'])('answers %s with 405 and Allow', async (method) => {
    const response = await fetch(session.url, {
      method,
      headers: session.headers(),
      body: JSON.stringify(toolsList()),
    })
    expect(response.status).toBe(405)
    const allow = (response.headers.get('allow') ?? '').split(',').map((m) => m.trim())
    expect(allow).toEqual(expect.arrayContaining(['GET', 'POST', 'DELETE']))
    await response.body?.cancel()
  })

  it('answers a notification POST with 202 and an empty body', async () => {
    const response = await session.post({
      jsonrpc: '2.0',
      method: 'notifications/roots/list_changed',
    })
    expect(response.status).toBe(202)
    expect(await response.text()).toBe('')
  })

  it('answers /healthz and /readyz with 200', async () => {
    const health = await fetch(`${bridge.origin}/healthz`)
    expect(health.status).toBe(200)
    await health.body?.cancel()
    const ready = await fetch(`${bridge.origin}/readyz`)
    expect(ready.status).toBe(200)
    await ready.body?.cancel()
  })

  it('answers 404 for paths that are not MCP endpoints', async () => {
    const response = await fetch(`${bridge.origin}/fixture/other`, {
      method: 'POST',
      headers: postHeaders(),
      body: JSON.stringify(initializeRequest()),
    })
    await expectHttpError(response, 404)
  })
})
