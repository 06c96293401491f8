/**
 * @module
 * Authentication, owner binding, access control and quotas through a real bridge (issue #6):
 * a JWKS issuer on 127.0.0.1 (`test/auth/issuer.ts`), an in-process bridge serving the
 * conformance fixture, raw HTTP for exact statuses and headers, and the MCP SDK client with
 * `requestInit.headers.Authorization` for the happy paths.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Keyring, hashToken } from '@ferry/bridge'
import { type TestIssuer, startIssuer } from '../auth/issuer.ts'
import {
  type TestBridge,
  cleanEnv,
  ferryBin,
  fixturePath,
  runFerry,
  startBridge,
  tempDir,
  writeCatalog,
} from '../helpers/bridge.ts'
import { descendantsOf } from '../helpers/processes.ts'
import {
  type JsonRpcMessage,
  SdkClients,
  initializeRequest,
  messagesOf,
  post,
  postHeaders,
  responseOf,
  textOf,
} from '../helpers/mcp.ts'

const STATIC_TOKEN = 'ferry_e2e-static-token-0123456789abcdefghijklmnopqrstu'
const fixture = { runtime: 'local', command: process.execPath, args: [fixturePath] }

let issuer: TestIssuer
let bridge: TestBridge
const clients = new SdkClients()

// Every WebSocket frame the bridge sends its sidecars, to prove tokens never reach them.
const frames: string[] = []
const originalSend = WebSocket.prototype.send
WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]) {
  frames.push(Buffer.isBuffer(data) ? data.toString('latin1') : String(data))
  return (originalSend as (...args: unknown[]) => void).call(this, data, ...rest)
} as typeof WebSocket.prototype.send

beforeAll(async () => {
  issuer = await startIssuer()
  await issuer.addKey({ kid: 'k1' })
  bridge = await startBridge({
    bridge: {
      auth: {
        mode: 'jwt',
        issuer: issuer.issuer,
        jwksUri: issuer.jwksUri,
        requiredScopes: ['mcp:tools'],
        scopesSupported: ['mcp:tools', 'mcp:admin'],
      },
      limits: {
        maxSessionsPerPrincipal: 3,
        sessionRate: { perMinute: 1, burst: 5 },
        maxInFlightPerSession: 2,
        maxStreamsPerSession: 2,
      },
    },
    servers: {
      restricted: { ...fixture, access: { principals: ['bob'], scopes: ['mcp:admin'] } },
      limited: { ...fixture, limits: { maxSessions: 3 } },
      ci: {
        ...fixture,
        auth: {
          mode: 'bearer',
          tokens: [{ sha256: await hashToken(STATIC_TOKEN), principal: 'ci-bot' }],
        },
      },
    },
  })
})

afterAll(async () => {
  WebSocket.prototype.send = originalSend
  await clients.closeAll()
  await bridge?.close()
  await issuer?.close()
})

const tokenFor = (sub: string, extra: Record<string, unknown> = {}, server = 'fixture') =>
  issuer.sign({ sub, aud: bridge.url(server), scope: 'mcp:tools', ...extra })

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

const initialize = (server: string, headers: Record<string, string>) =>
  post(bridge.url(server), initializeRequest(), postHeaders(undefined, headers))

/** Opens a session for `headers`' principal over raw HTTP; returns its id. */
const openSession = async (server: string, headers: Record<string, string>) => {
  const response = await initialize(server, headers)
  const sessionId = response.headers.get('mcp-session-id')
  const body = await responseOf(response)
  if (!sessionId) throw new Error(`initialize failed (${response.status}): ${JSON.stringify(body)}`)
  const initialized = await post(
    bridge.url(server),
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    postHeaders(sessionId, headers)
  )
  expect(initialized.status).toBe(202)
  return sessionId
}

const del = (server: string, sessionId: string, headers: Record<string, string>) =>
  fetch(bridge.url(server), {
    method: 'DELETE',
    headers: { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25', ...headers },
  })

const metadataUrl = (server: string) =>
  `${bridge.origin}/.well-known/oauth-protected-resource/${server}/mcp`

/** A 401 with the bridge's challenge; `error` when a token was presented. */
const expect401 = async (response: Response, invalid: boolean) => {
  expect(response.status).toBe(401)
  const challenge = response.headers.get('www-authenticate') ?? ''
  expect(challenge).toContain(`resource_metadata="${metadataUrl('fixture')}"`)
  expect(challenge).toContain('scope="mcp:tools"')
  if (invalid) expect(challenge).toContain('error="invalid_token"')
  else expect(challenge).not.toContain('error=')
  const body = (await response.json()) as JsonRpcMessage
  expect(body.error?.message).toMatch(/^Unauthorized: /)
  return body
}

describe('authentication failures through HTTP', () => {
  it('answers a request without a token with 401 and the metadata URL (POST, GET, DELETE)', async () => {
    await expect401(await initialize('fixture', {}), false)
    const get = await fetch(bridge.url('fixture'), {
      headers: { accept: 'text/event-stream', 'mcp-session-id': 'x' },
    })
    await expect401(get, false)
    await expect401(await del('fixture', 'x', {}), false)
    // A token in the query string is ignored.
    const query = await post(
      `${bridge.url('fixture')}?access_token=${await tokenFor('alice')}`,
      initializeRequest(),
      postHeaders()
    )
    const body = await expect401(query, false)
    expect(body.error?.message).toContain('query string')
  })

  it.each([
    ['malformed', async () => 'not a jwt'],
    [
      'expired',
      async () =>
        issuer.sign(
          { sub: 'a', aud: bridge.url('fixture'), scope: 'mcp:tools' },
          { expiresIn: -600 }
        ),
    ],
    [
      'wrong issuer',
      async () =>
        issuer.sign(
          { sub: 'a', aud: bridge.url('fixture'), scope: 'mcp:tools' },
          { issuer: 'http://127.0.0.1:1' }
        ),
    ],
    ['wrong audience (another endpoint)', async () => tokenFor('a', {}, 'everything')],
    [
      'unknown key id',
      async () =>
        issuer.sign(
          { sub: 'a', aud: bridge.url('fixture'), scope: 'mcp:tools' },
          { key: await issuer.addKey({ publish: false }) }
        ),
    ],
    [
      'no principal claim',
      async () => issuer.sign({ aud: bridge.url('fixture'), scope: 'mcp:tools' }),
    ],
  ])('answers a %s token with 401 invalid_token', async (_name, make) => {
    const token = await make()
    const response = await initialize('fixture', bearer(token))
    await expect401(response, true)
    expect(bridge.sidecars().size).toBeGreaterThanOrEqual(0)
  })

  it('answers a non-Bearer scheme with 401', async () => {
    await expect401(await initialize('fixture', { authorization: 'Basic YTpi' }), false)
  })

  it('answers a valid token without the required scope with 403 insufficient_scope', async () => {
    const token = await tokenFor('alice', { scope: 'openid' })
    const response = await initialize('fixture', bearer(token))
    expect(response.status).toBe(403)
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="${metadataUrl('fixture')}"`
    )
  })

  it('starts no workload for a refused request', async () => {
    const before = bridge.sidecars().size
    await initialize('fixture', bearer('garbage'))
    await initialize('fixture', {})
    expect(bridge.sidecars().size).toBe(before)
  })
})

describe('protected resource metadata', () => {
  it('serves the path-inserted document of each protected server', async () => {
    const response = await fetch(metadataUrl('fixture'))
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({
      resource: bridge.url('fixture'),
      authorization_servers: [issuer.issuer],
      scopes_supported: ['mcp:tools', 'mcp:admin'],
      bearer_methods_supported: ['header'],
    })
    const ci = (await (await fetch(metadataUrl('ci'))).json()) as { resource: string }
    expect(ci.resource).toBe(bridge.url('ci'))
  })

  it("serves the default server's document at the root and at /mcp", async () => {
    for (const url of [
      `${bridge.origin}/.well-known/oauth-protected-resource`,
      `${bridge.origin}/.well-known/oauth-protected-resource/mcp`,
    ]) {
      const response = await fetch(url)
      expect(response.status).toBe(200)
      expect(((await response.json()) as { resource: string }).resource).toBe(bridge.url())
    }
  })
})

describe('authenticated sessions', () => {
  it('serves the SDK client with a valid JWT, and no token reaches the sidecar or server', async () => {
    const token = await tokenFor('alice')
    const { client } = await clients.connect(bridge.url('fixture'), { headers: bearer(token) })
    const env = textOf(await client.callTool({ name: 'ferry_env', arguments: {} }))
    const meta = textOf(await client.callTool({ name: 'ferry_meta', arguments: {} }))
    const tools = await client.listTools()
    expect(tools.tools.length).toBeGreaterThan(0)
    for (const seen of [env, meta]) {
      expect(seen).not.toContain(token)
      expect(seen.toLowerCase()).not.toContain('authorization')
    }
    // Frames sent to sidecars, and the environment of every sidecar and server process.
    expect(frames.length).toBeGreaterThan(0)
    const signature = token.split('.')[2]!
    for (const frame of frames) {
      expect(frame).not.toContain(signature)
      expect(frame.toLowerCase()).not.toContain('bearer ')
    }
    const pids = [...bridge.sidecars().values()].flatMap((child) =>
      child.pid ? [child.pid, ...descendantsOf(child.pid)] : []
    )
    expect(pids.length).toBeGreaterThan(0)
    for (const pid of pids) {
      let environ: string
      try {
        environ = readFileSync(`/proc/${pid}/environ`, 'latin1')
      } catch {
        continue // gone already
      }
      expect(environ).not.toContain(signature)
      expect(environ).not.toContain(STATIC_TOKEN)
    }
  })

  it('serves a static bearer token on its server, and refuses an unknown one', async () => {
    const { client } = await clients.connect(bridge.url('ci'), { headers: bearer(STATIC_TOKEN) })
    expect(textOf(await client.callTool({ name: 'ferry_env', arguments: {} }))).not.toContain(
      STATIC_TOKEN
    )
    const wrong = await initialize('ci', bearer('ferry_not-the-token'))
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toContain('error="invalid_token"')
    // A JWT for the fixture does not open the bearer server, nor the static token the fixture.
    expect((await initialize('ci', bearer(await tokenFor('alice')))).status).toBe(401)
    expect((await initialize('fixture', bearer(STATIC_TOKEN))).status).toBe(401)
    for (const frame of frames) expect(frame).not.toContain(STATIC_TOKEN)
  })
})

describe('owner binding', () => {
  it("answers another principal's requests on a session with 404, while the owner keeps working", async () => {
    const alice = bearer(await tokenFor('hijack-alice'))
    const mallory = bearer(await tokenFor('hijack-mallory'))
    const sessionId = await openSession('fixture', alice)
    const list = { jsonrpc: '2.0', id: 7, method: 'tools/list' }

    const hijackPost = await post(bridge.url('fixture'), list, postHeaders(sessionId, mallory))
    expect(hijackPost.status).toBe(404)
    const unknown = await post(bridge.url('fixture'), list, postHeaders('nope.AAAA', mallory))
    expect(unknown.status).toBe(404)
    // Indistinguishable from an unknown session.
    expect(await hijackPost.json()).toEqual(await unknown.json())

    const hijackGet = await fetch(bridge.url('fixture'), {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId, ...mallory },
    })
    expect(hijackGet.status).toBe(404)
    expect((await del('fixture', sessionId, mallory)).status).toBe(404)

    // A static-token principal cannot use it either (another server's auth, another endpoint).
    const owner = await post(bridge.url('fixture'), list, postHeaders(sessionId, alice))
    expect(owner.status).toBe(200)
    expect((await responseOf(owner)).result?.tools).toBeDefined()
    expect((await del('fixture', sessionId, alice)).status).toBe(200)
  })
})

describe('access control', () => {
  it('admits listed principals and holders of the scopes, refuses others with 403', async () => {
    const denied = await initialize('restricted', bearer(await tokenFor('alice', {}, 'restricted')))
    expect(denied.status).toBe(403)
    expect(denied.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", scope="mcp:admin", resource_metadata="${metadataUrl('restricted')}"`
    )
    expect(((await denied.json()) as JsonRpcMessage).error?.message).toMatch(/^Forbidden: /)
    const bob = await openSession('restricted', bearer(await tokenFor('bob', {}, 'restricted')))
    expect(bob).toBeTruthy()
    const admin = bearer(await tokenFor('carol', { scope: 'mcp:tools mcp:admin' }, 'restricted'))
    expect(await openSession('restricted', admin)).toBeTruthy()
  })
})

/** The JSON-RPC error of a 429, checked for `Retry-After` and the named limit. */
const expect429 = async (response: Response, limit: string) => {
  expect(response.status).toBe(429)
  expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
  const body = (await response.json()) as JsonRpcMessage
  expect(body.error?.data).toMatchObject({ limit })
  expect(body.error?.message).toContain((body.error?.data as { setting: string }).setting)
  return body
}

describe('quotas', () => {
  it('admits exactly maxSessionsPerPrincipal sessions, refuses the next, and frees a place on DELETE', async () => {
    const dave = bearer(await tokenFor('dave'))
    const ids = []
    for (let i = 0; i < 3; i++) ids.push(await openSession('fixture', dave))
    await expect429(await initialize('fixture', dave), 'maxSessionsPerPrincipal')
    // Another principal is not affected.
    expect(await openSession('fixture', bearer(await tokenFor('dave-2')))).toBeTruthy()
    expect((await del('fixture', ids[0]!, dave)).status).toBe(200)
    ids[0] = await openSession('fixture', dave)
    for (const id of ids) await del('fixture', id, dave)
  })

  it('limits the session start rate per principal', async () => {
    const erin = bearer(await tokenFor('erin'))
    for (let i = 0; i < 5; i++) {
      const id = await openSession('fixture', erin)
      await del('fixture', id, erin)
    }
    await expect429(await initialize('fixture', erin), 'sessionRate')
  })

  it('never exceeds a per-principal limit under concurrent initializes', async () => {
    const frank = bearer(await tokenFor('frank'))
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => initialize('fixture', frank))
    )
    const ok = responses.filter((r) => r.status === 200 && r.headers.has('mcp-session-id'))
    expect(ok).toHaveLength(3)
    for (const response of responses) {
      if (response.status === 200) continue
      expect(response.status).toBe(429)
      const body = (await response.json()) as JsonRpcMessage
      expect(['sessionRate', 'maxSessionsPerPrincipal']).toContain(
        (body.error?.data as { limit: string }).limit
      )
    }
    for (const response of ok) await del('fixture', response.headers.get('mcp-session-id')!, frank)
  })

  it("never exceeds a server's own limit under concurrent initializes of many principals", async () => {
    const headers = await Promise.all(
      Array.from({ length: 12 }, async (_, i) =>
        bearer(await tokenFor(`limited-${i}`, {}, 'limited'))
      )
    )
    const responses = await Promise.all(headers.map((h) => initialize('limited', h)))
    const ok = responses.filter((r) => r.headers.has('mcp-session-id'))
    expect(ok).toHaveLength(3)
    const refused = responses.filter((r) => r.status === 429)
    expect(refused).toHaveLength(9)
    const body = await expect429(refused[0]!, 'maxSessionsPerServer')
    expect((body.error?.data as { setting: string }).setting).toBe(
      'servers.limited.limits.maxSessions'
    )
    for (const [i, response] of responses.entries()) {
      const id = response.headers.get('mcp-session-id')
      if (id) await del('limited', id, headers[i]!)
    }
  })

  it('limits requests in flight and open streams per session', async () => {
    const grace = bearer(await tokenFor('grace'))
    const sessionId = await openSession('fixture', grace)
    const sleep = (id: number) =>
      post(
        bridge.url('fixture'),
        {
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: { name: 'ferry_sleep', arguments: { ms: 1500 } },
        },
        postHeaders(sessionId, grace)
      )
    const slow = [sleep(1), sleep(2)]
    await new Promise((resolve) => setTimeout(resolve, 300))
    await expect429(await sleep(3), 'maxInFlightPerSession')
    const answers = await Promise.all(slow)
    for (const answer of answers) expect((await responseOf(answer)).result).toBeDefined()
    // Both slots are free again.
    expect((await responseOf(await sleep(4))).result).toBeDefined()

    // Streams: the standalone GET, then POST answers that stream (progress before the result).
    const get = new AbortController()
    const standalone = await fetch(bridge.url('fixture'), {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId, ...grace },
      signal: get.signal,
    })
    expect(standalone.status).toBe(200)
    const progress = (id: number, count = 2, intervalMs = 300) =>
      post(
        bridge.url('fixture'),
        {
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: {
            name: 'ferry_progress',
            arguments: { count, intervalMs },
            _meta: { progressToken: `p${id}` },
          },
        },
        postHeaders(sessionId, grace)
      )
    const streamed = await progress(5, 2, 1000)
    expect(streamed.headers.get('content-type')).toContain('text/event-stream')
    // A third stream is refused when its answer would start streaming.
    await expect429(await progress(6, 1, 50), 'maxStreamsPerSession')
    expect((await responseOf(streamed)).result).toBeDefined()
    // The POST stream ended: its place is free again.
    const again = await progress(7)
    expect((await responseOf(again)).result).toBeDefined()
    get.abort()
    await del('fixture', sessionId, grace)
  })
})

describe('across replicas sharing a keyring', () => {
  it('binds owners on every replica and counts sessions per replica with the local runtime', async () => {
    const keyring = await Keyring.generate()
    const auth = {
      mode: 'jwt',
      issuer: issuer.issuer,
      jwksUri: issuer.jwksUri,
      audience: ['ferry-replicas'],
    }
    const limits = { maxSessionsPerPrincipal: 2 }
    const a = await startBridge({ keyring, bridge: { auth, limits } })
    const b = await startBridge({ keyring, bridge: { auth, limits } })
    try {
      const token = await issuer.sign({ sub: 'rita', aud: 'ferry-replicas' })
      const other = await issuer.sign({ sub: 'sam', aud: 'ferry-replicas' })
      const headers = postHeaders(undefined, bearer(token))
      const open = async (replica: TestBridge) =>
        post(replica.url('fixture'), initializeRequest(), headers)
      const first = await open(a)
      const sessionId = first.headers.get('mcp-session-id')!
      await messagesOf(first)
      // The owner on the other replica works; another principal gets 404 there too.
      const list = { jsonrpc: '2.0', id: 1, method: 'tools/list' }
      const onB = await post(b.url('fixture'), list, postHeaders(sessionId, bearer(token)))
      expect(onB.status).toBe(200)
      await messagesOf(onB)
      const hijack = await post(b.url('fixture'), list, postHeaders(sessionId, bearer(other)))
      expect(hijack.status).toBe(404)
      // Per replica: each admits maxSessionsPerPrincipal, so two replicas admit 2 × 2.
      expect((await open(a)).status).toBe(200)
      await expect429(await open(a), 'maxSessionsPerPrincipal')
      expect((await open(b)).status).toBe(200)
      expect((await open(b)).status).toBe(200)
      await expect429(await open(b), 'maxSessionsPerPrincipal')
    } finally {
      await a.close()
      await b.close()
    }
  })
})

describe('the ferry command', () => {
  it('refuses to serve unauthenticated on a non-loopback address, without binding', async () => {
    const dir = tempDir()
    const catalogFile = writeCatalog(dir, { servers: { fixture } })
    const result = await runFerry(['serve'], {
      ...cleanEnv(),
      FERRY_CONFIG: catalogFile,
      HOST: '0.0.0.0',
      PORT: '0',
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('refusing to serve without authentication on 0.0.0.0')
    expect(result.stderr).toContain('allowUnauthenticated')
    expect(result.stderr).not.toContain('bridge listening')
  })

  it('hashes a token from standard input, and generates one', async () => {
    const hashed = spawnSync(process.execPath, [ferryBin, 'auth', 'hash-token'], {
      input: `${STATIC_TOKEN}\n`,
      env: cleanEnv(),
    })
    expect(hashed.status).toBe(0)
    expect(hashed.stdout.toString().trim()).toBe(await hashToken(STATIC_TOKEN))
    const generated = await runFerry(['auth', 'hash-token', '--generate'])
    expect(generated.code).toBe(0)
    const [, token, sha] = /token: +(ferry_\S+)\nsha256: (\S+)/.exec(generated.stdout) ?? []
    expect(sha).toBe(await hashToken(token!))
  })
})

describe('hardening', () => {
  it('sets a request id and security headers, and answers no CORS unless configured', async () => {
    const response = await initialize('fixture', { 'x-request-id': 'client-req-42' })
    expect(response.headers.get('x-request-id')).toBe('client-req-42')
    expect(response.headers.get('x-content-type-options')).toBe('nosniff')
    expect(response.headers.get('cache-control')).toBe('no-store')
    expect(response.headers.get('referrer-policy')).toBe('no-referrer')
    expect(response.headers.get('x-frame-options')).toBe('DENY')
    expect(response.headers.get('access-control-allow-origin')).toBeNull()
    const insane = await fetch(`${bridge.origin}/healthz`, {
      headers: { 'x-request-id': 'bad id with spaces' },
    })
    expect(insane.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    expect(insane.headers.get('x-content-type-options')).toBe('nosniff')
    expect(insane.headers.get('cache-control')).toBe('no-store')
    // A response's own cache-control stays.
    const metadata = await fetch(metadataUrl('fixture'))
    expect(metadata.status).toBe(200)
    expect(metadata.headers.get('cache-control')).toBe('public, max-age=300')
    expect(metadata.headers.get('x-frame-options')).toBe('DENY')
    const preflight = await fetch(bridge.url('fixture'), {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost', 'access-control-request-method': 'POST' },
    })
    expect(preflight.status).toBe(405)
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('answers CORS for the configured origins only', async () => {
    const cors = await startBridge({ bridge: { allowedOrigins: ['https://app.example.com'] } })
    try {
      const preflight = await fetch(cors.url('fixture'), {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' },
      })
      expect(preflight.status).toBe(204)
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
      expect(preflight.headers.get('access-control-allow-methods')).toBe('GET, POST, DELETE')
      expect(preflight.headers.get('access-control-allow-headers')).toContain('mcp-session-id')
      expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization')
      const other = await fetch(cors.url('fixture'), {
        method: 'OPTIONS',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      })
      expect(other.status).toBe(403)
      expect(other.headers.get('access-control-allow-origin')).toBeNull()
      const answer = await post(
        cors.url('fixture'),
        initializeRequest(),
        postHeaders(undefined, { origin: 'https://app.example.com' })
      )
      expect(answer.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
      expect(answer.headers.get('access-control-expose-headers')).toBe(
        'mcp-session-id, www-authenticate'
      )
      await messagesOf(answer)
    } finally {
      await cors.close()
    }
  })
})
