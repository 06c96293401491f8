/**
 * @module
 * The bridge's JWT authentication against a real issuer: a JWKS served over HTTP on 127.0.0.1
 * by `issuer.ts`, fetched and cached by jose's remote key set. Every failure path of issue #6:
 * missing header, malformed, expired, not yet valid, wrong issuer, wrong audience, missing
 * scope, unknown key id, bad signature, `alg: none`, key rotation, an unreachable issuer — and
 * the discovery a client performs from a 401.
 */
import { AuthSettingsSchema, type JwtAuthSettings } from '@ferry/shared'
import { Hono } from 'hono'
import { SignJWT, UnsecuredJWT, base64url } from 'jose'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  type AuthFailure,
  type AuthResult,
  type Principal,
  authFailureError,
  canonicalResourceUri,
  checkAccess,
  createAuthenticator,
  principalHash,
  protectedResourceRoutes,
  resourceForRequest,
  sameOwner,
} from '../../bridge/src/auth/index.ts'
import { type TestIssuer, startIssuer } from './issuer.ts'

const PUBLIC_URL = 'https://mcp.example.com'
const RESOURCE = canonicalResourceUri(PUBLIC_URL, '/github/mcp')
const METADATA = `${PUBLIC_URL}/.well-known/oauth-protected-resource/github/mcp`

let issuer: TestIssuer

beforeAll(async () => {
  issuer = await startIssuer()
  await issuer.addKey({ kid: 'k1' })
})
afterAll(() => issuer.close())

const settingsFor = (overrides: Record<string, unknown> = {}): JwtAuthSettings =>
  AuthSettingsSchema.parse({
    mode: 'jwt',
    issuer: issuer.issuer,
    jwksUri: issuer.jwksUri,
    requiredScopes: ['mcp:tools'],
    scopesSupported: ['mcp:tools', 'mcp:admin'],
    jwksCooldown: '30s',
    ...overrides,
  }) as JwtAuthSettings

const post = (authorization?: string, url = RESOURCE): Request =>
  new Request(url, {
    method: 'POST',
    headers: authorization === undefined ? {} : { authorization: authorization },
  })

const claims = (extra: Record<string, unknown> = {}) => ({
  sub: 'alice',
  aud: RESOURCE,
  scope: 'mcp:tools openid',
  ...extra,
})

const failureOf = (result: AuthResult): AuthFailure => {
  if (!('failure' in result)) throw new Error(`expected a failure, got ${JSON.stringify(result)}`)
  return result.failure
}
const principalOf = (result: AuthResult): Principal => {
  if (!('principal' in result))
    throw new Error(`expected a principal, got ${JSON.stringify(result)}`)
  return result.principal
}

/** A 401 `invalid_token` with the challenge every such failure carries. */
const expectInvalidToken = (failure: AuthFailure, reason: AuthFailure['reason']) => {
  expect(failure.status).toBe(401)
  expect(failure.reason).toBe(reason)
  expect(failure.headers['www-authenticate']).toBe(
    `Bearer resource_metadata="${METADATA}", scope="mcp:tools", error="invalid_token", error_description="${failure.message}"`
  )
}

describe('JWT against a JWKS over HTTP', () => {
  let auth: ReturnType<typeof createAuthenticator>
  beforeEach(() => {
    auth = createAuthenticator(settingsFor())
  })

  it('accepts a valid token, fetching the JWKS once and caching it', async () => {
    const before = issuer.fetches
    const token = await issuer.sign(claims())
    expect(principalOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE))).toEqual({
      id: 'alice',
      scopes: ['mcp:tools', 'openid'],
      method: 'jwt',
    })
    const second = await issuer.sign(claims({ sub: 'bob' }))
    expect(principalOf(await auth.authenticate(post(`Bearer ${second}`), RESOURCE)).id).toBe('bob')
    expect(issuer.fetches - before).toBe(1)
  })

  it('1. missing Authorization header → 401 with the metadata URL and scope, no error code', async () => {
    const failure = failureOf(await auth.authenticate(post(), RESOURCE))
    expect(failure.status).toBe(401)
    expect(failure.reason).toBe('missing_token')
    expect(failure.headers['www-authenticate']).toBe(
      `Bearer resource_metadata="${METADATA}", scope="mcp:tools"`
    )
  })

  it('2. malformed token → 401 invalid_token', async () => {
    for (const token of ['not-a-jwt', 'a.b.c', 'eyJhbGciOiJSUzI1NiJ9.e30', '....']) {
      expectInvalidToken(
        failureOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE)),
        'malformed_token'
      )
    }
  })

  it('3. expired token (beyond the clock skew) → 401 invalid_token; within the skew → accepted', async () => {
    const expired = await issuer.sign(claims(), { expiresIn: -61 })
    const failure = failureOf(await auth.authenticate(post(`Bearer ${expired}`), RESOURCE))
    expectInvalidToken(failure, 'expired')
    expect(failure.message).toBe('the token expired')
    const barely = await issuer.sign(claims(), { expiresIn: -50 })
    expect(principalOf(await auth.authenticate(post(`Bearer ${barely}`), RESOURCE)).id).toBe(
      'alice'
    )
    const strict = createAuthenticator(settingsFor({ clockSkew: 0 }))
    expectInvalidToken(
      failureOf(await strict.authenticate(post(`Bearer ${barely}`), RESOURCE)),
      'expired'
    )
  })

  it('4. not yet valid beyond the skew → 401 invalid_token; within the skew → accepted', async () => {
    const future = await issuer.sign(claims(), { notBefore: 120 })
    expectInvalidToken(
      failureOf(await auth.authenticate(post(`Bearer ${future}`), RESOURCE)),
      'not_yet_valid'
    )
    const soon = await issuer.sign(claims(), { notBefore: 30 })
    expect(principalOf(await auth.authenticate(post(`Bearer ${soon}`), RESOURCE)).id).toBe('alice')
  })

  it('5. wrong issuer → 401 invalid_token (even with a key the JWKS has)', async () => {
    for (const iss of [
      'https://evil.example.com',
      `${issuer.issuer}/`,
      issuer.issuer.toUpperCase(),
    ]) {
      const token = await issuer.sign(claims(), { issuer: iss })
      expectInvalidToken(
        failureOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE)),
        'wrong_issuer'
      )
    }
  })

  it('6. wrong audience → 401 invalid_token: another resource, none, or a prefix of ours', async () => {
    for (const aud of [
      'https://mcp.example.com/other/mcp',
      'https://other.example.com/github/mcp',
      PUBLIC_URL,
      `${RESOURCE}/`,
      undefined,
    ]) {
      const token = await issuer.sign(claims({ aud }))
      expectInvalidToken(
        failureOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE)),
        'wrong_audience'
      )
    }
    // A token for several audiences including ours is fine.
    const multi = await issuer.sign(claims({ aud: ['https://api.example.com', RESOURCE] }))
    expect(principalOf(await auth.authenticate(post(`Bearer ${multi}`), RESOURCE)).id).toBe('alice')
  })

  it('7. missing scope → 403 insufficient_scope naming the scope', async () => {
    const token = await issuer.sign(claims({ scope: 'openid mcp:read' }))
    const failure = failureOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE))
    expect(failure).toEqual({
      status: 403,
      reason: 'insufficient_scope',
      message: 'the token lacks a required scope (mcp:tools)',
      headers: {
        'www-authenticate': `Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="${METADATA}"`,
      },
    })
  })

  it('8. unknown key id (kid not in the JWKS) → 401 invalid_token', async () => {
    const unpublished = await issuer.addKey({ kid: 'unpublished', publish: false })
    const token = await issuer.sign(claims(), { key: unpublished })
    expectInvalidToken(
      failureOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE)),
      'unknown_key'
    )
  })

  it('9. bad signature (a published kid, another key) → 401 invalid_token', async () => {
    const forger = await issuer.addKey({ kid: 'forger', publish: false })
    const forged = await issuer.sign(claims(), { key: forger, kid: 'k1' })
    expectInvalidToken(
      failureOf(await auth.authenticate(post(`Bearer ${forged}`), RESOURCE)),
      'bad_signature'
    )
    // A genuine token with one claim changed after signing.
    const genuine = await issuer.sign(claims())
    const [header, , signature] = genuine.split('.')
    const payload = base64url.encode(
      JSON.stringify({ ...claims({ sub: 'admin' }), iss: issuer.issuer, exp: 4e9 })
    )
    expectInvalidToken(
      failureOf(
        await auth.authenticate(post(`Bearer ${header}.${payload}.${signature}`), RESOURCE)
      ),
      'bad_signature'
    )
  })

  it('10. alg: none → 401 invalid_token', async () => {
    const unsigned = new UnsecuredJWT(
      claims({ iss: issuer.issuer, exp: Math.floor(Date.now() / 1000) + 300 })
    ).encode()
    expectInvalidToken(
      failureOf(await auth.authenticate(post(`Bearer ${unsigned}`), RESOURCE)),
      'algorithm_not_allowed'
    )
  })

  it('11. an algorithm outside the allow-list → 401 invalid_token, also HS256 keyed with the public key', async () => {
    const ec = await issuer.addKey({ kid: 'ec1', alg: 'ES256' })
    const rsOnly = createAuthenticator(settingsFor({ algorithms: ['RS256'] }))
    const token = await issuer.sign(claims(), { key: ec })
    expectInvalidToken(
      failureOf(await rsOnly.authenticate(post(`Bearer ${token}`), RESOURCE)),
      'algorithm_not_allowed'
    )
    issuer.retire('ec1')
    // The classic key-confusion attack: HMAC with the public key's bytes as the secret.
    const secret = new TextEncoder().encode(JSON.stringify(issuer.current.publicJwk))
    const confused = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .setIssuer(issuer.issuer)
      .setExpirationTime('5m')
      .sign(secret)
    expectInvalidToken(
      failureOf(await auth.authenticate(post(`Bearer ${confused}`), RESOURCE)),
      'algorithm_not_allowed'
    )
  })

  it('12. a token without exp → 401 invalid_token', async () => {
    const token = await issuer.sign(claims(), { noExpiry: true })
    expectInvalidToken(
      failureOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE)),
      'invalid_claims'
    )
  })

  it('13. a valid token in the query string is ignored → 401', async () => {
    const token = await issuer.sign(claims())
    const failure = failureOf(
      await auth.authenticate(post(undefined, `${RESOURCE}?access_token=${token}`), RESOURCE)
    )
    expect(failure.status).toBe(401)
    expect(failure.reason).toBe('missing_token')
  })

  it('14. unknown key ids cannot make the bridge hammer the issuer (cooldown)', async () => {
    const fresh = createAuthenticator(settingsFor({ jwksCooldown: '1m' }))
    await fresh.authenticate(post(`Bearer ${await issuer.sign(claims())}`), RESOURCE)
    const before = issuer.fetches
    for (let i = 0; i < 20; i++) {
      const token = await issuer.sign(claims(), { kid: `random-${i}` })
      expect(failureOf(await fresh.authenticate(post(`Bearer ${token}`), RESOURCE)).reason).toBe(
        'unknown_key'
      )
    }
    expect(issuer.fetches - before).toBe(0)
  })

  it('15. an unreachable JWKS → 503 with Retry-After, not a 401 that would discard a good token', async () => {
    const fresh = createAuthenticator(settingsFor())
    issuer.failWith(500)
    try {
      const token = await issuer.sign(claims())
      const failure = failureOf(await fresh.authenticate(post(`Bearer ${token}`), RESOURCE))
      expect(failure).toMatchObject({
        status: 503,
        reason: 'jwks_unavailable',
        headers: { 'retry-after': '5' },
      })
      const response = authFailureError(failure).toResponse()
      expect(response.status).toBe(503)
      expect(await response.text()).not.toContain(token)
    } finally {
      issuer.failWith(undefined)
    }
    const dead = createAuthenticator(
      settingsFor({ jwksUri: 'http://127.0.0.1:9/jwks.json', jwksTimeout: '2s' })
    )
    const failure = failureOf(
      await dead.authenticate(post(`Bearer ${await issuer.sign(claims())}`), RESOURCE)
    )
    expect(failure.status).toBe(503)
  })
})

describe('key rotation', () => {
  it('16. fetches a new key id at once and rejects the old one after it is removed', async () => {
    const rotating = await startIssuer()
    try {
      const old = await rotating.addKey({ kid: 'old' })
      const settings = AuthSettingsSchema.parse({
        mode: 'jwt',
        issuer: rotating.issuer,
        jwksUri: rotating.jwksUri,
        jwksCooldown: 0,
      }) as JwtAuthSettings
      const auth = createAuthenticator(settings)
      const oldToken = await rotating.sign(claims(), { key: old })
      expect(principalOf(await auth.authenticate(post(`Bearer ${oldToken}`), RESOURCE)).id).toBe(
        'alice'
      )
      expect(rotating.fetches).toBe(1)

      // The issuer publishes a new key, signs with it, and retires the old one.
      const next = await rotating.addKey({ kid: 'new' })
      rotating.retire('old')
      const newToken = await rotating.sign(claims({ sub: 'bob' }), { key: next })
      expect(principalOf(await auth.authenticate(post(`Bearer ${newToken}`), RESOURCE)).id).toBe(
        'bob'
      )
      expect(rotating.fetches).toBe(2) // the unknown kid triggered a refetch

      // The refetched set no longer has the old key: its tokens are refused, unexpired or not.
      const failure = failureOf(await auth.authenticate(post(`Bearer ${oldToken}`), RESOURCE))
      expect(failure).toMatchObject({ status: 401, reason: 'unknown_key' })
      expect(principalOf(await auth.authenticate(post(`Bearer ${newToken}`), RESOURCE)).id).toBe(
        'bob'
      )
    } finally {
      await rotating.close()
    }
  })

  it('17. drops a retired key once the cache expires, even without a new key id', async () => {
    const rotating = await startIssuer()
    try {
      const old = await rotating.addKey({ kid: 'old' })
      const auth = createAuthenticator(
        AuthSettingsSchema.parse({
          mode: 'jwt',
          issuer: rotating.issuer,
          jwksUri: rotating.jwksUri,
          jwksCacheMaxAge: 50,
          jwksCooldown: '1m',
        })
      )
      const token = await rotating.sign(claims(), { key: old })
      expect(principalOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE)).id).toBe(
        'alice'
      )
      await rotating.addKey({ kid: 'new' })
      rotating.retire('old')
      await new Promise((resolve) => setTimeout(resolve, 80))
      expect(failureOf(await auth.authenticate(post(`Bearer ${token}`), RESOURCE)).reason).toBe(
        'unknown_key'
      )
    } finally {
      await rotating.close()
    }
  })
})

describe('a protected MCP endpoint, end to end', () => {
  /** A minimal app wired the way the transport will be: metadata routes, then authentication. */
  const appFor = (settings: JwtAuthSettings) => {
    const app = new Hono()
    const auth = createAuthenticator(settings)
    app.route(
      '/',
      protectedResourceRoutes({
        resources: [{ path: '/github/mcp', auth: settings }],
        publicUrl: PUBLIC_URL,
      })
    )
    app.post('/github/mcp', async (c) => {
      const resource = resourceForRequest(c.req.raw, '/github/mcp', PUBLIC_URL)
      const result = await auth.authenticate(c.req.raw, resource)
      if ('failure' in result) return authFailureError(result.failure).toResponse()
      const access = checkAccess({ principals: ['alice'] }, result.principal)
      if (!access.ok) return c.json({ error: access.message }, access.status)
      return c.json({ principal: result.principal.id, sub: await principalHash(result.principal) })
    })
    return app
  }

  it('18. lets a client discover the issuer from a 401, then admits its token', async () => {
    const app = appFor(settingsFor())
    const unauthorized = await app.request(`${PUBLIC_URL}/github/mcp`, { method: 'POST' })
    expect(unauthorized.status).toBe(401)
    const challenge = unauthorized.headers.get('www-authenticate')!
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)![1]!
    const metadata = (await (await app.request(metadataUrl)).json()) as {
      resource: string
      authorization_servers: string[]
      scopes_supported: string[]
    }
    expect(metadata).toEqual({
      resource: RESOURCE,
      authorization_servers: [issuer.issuer],
      scopes_supported: ['mcp:tools', 'mcp:admin'],
      bearer_methods_supported: ['header'],
    })
    // The client asks the authorization server for a token with resource=<metadata.resource>.
    const token = await issuer.sign(claims({ aud: metadata.resource }))
    const ok = await app.request(`${PUBLIC_URL}/github/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    })
    expect(ok.status).toBe(200)
    const body = (await ok.json()) as { principal: string; sub: string }
    expect(body.principal).toBe('alice')
    expect(await sameOwner(body.sub, { id: 'alice', scopes: [], method: 'jwt' })).toBe(true)
    expect(await sameOwner(body.sub, { id: 'bob', scopes: [], method: 'jwt' })).toBe(false)
  })

  it('19. refuses an authenticated principal outside the access list with 403', async () => {
    const app = appFor(settingsFor())
    const token = await issuer.sign(claims({ sub: 'mallory' }))
    const response = await app.request(`${PUBLIC_URL}/github/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    })
    expect(response.status).toBe(403)
  })
})
