/**
 * @module Tests for the authenticator without a network: `none`, static bearer tokens, header
 * parsing, and JWTs against an inline JWKS. The JWKS-over-HTTP cases (rotation, unknown key
 * ids, an unreachable issuer) are in `test/auth/`.
 */
import { createHash } from 'node:crypto'
import { AuthSettingsSchema, parseCatalog } from '@ferry/shared'
import { type CryptoKey, SignJWT, exportJWK, generateKeyPair } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type AuthResult,
  createAuthenticator,
  createCatalogAuthenticators,
} from './authenticator.ts'
import { authFailureError } from './challenge.ts'
import { generateToken, hashToken, StaticTokens } from './static-tokens.ts'

const RESOURCE = 'https://mcp.example.com/github/mcp'
const METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/github/mcp'
const sha = (token: string) => createHash('sha256').update(token).digest('base64url')

const request = (authorization?: string, url = RESOURCE): Request =>
  new Request(url, {
    method: 'POST',
    headers: authorization === undefined ? {} : { authorization },
  })

const failureOf = (result: AuthResult) => {
  if (!('failure' in result)) throw new Error(`expected a failure, got ${JSON.stringify(result)}`)
  return result.failure
}
const principalOf = (result: AuthResult) => {
  if (!('principal' in result))
    throw new Error(`expected a principal, got ${JSON.stringify(result)}`)
  return result.principal
}

describe('hashToken and generateToken', () => {
  it('hash as base64url SHA-256, the form the catalog stores', async () => {
    expect(await hashToken('secret-token')).toBe(sha('secret-token'))
    expect(await hashToken('ünïcode')).toBe(sha('ünïcode'))
    await expect(hashToken('')).rejects.toThrow(RangeError)
    const token = generateToken()
    expect(token).toMatch(/^ferry_[A-Za-z0-9_-]{43}$/)
    expect(generateToken()).not.toBe(token)
    const settings = AuthSettingsSchema.parse({
      mode: 'bearer',
      tokens: [{ sha256: await hashToken(token), principal: 'p' }],
    })
    expect(settings.mode).toBe('bearer')
  })

  it('StaticTokens finds the matching entry only', async () => {
    const tokens = new StaticTokens([
      { sha256: sha('one'), principal: 'a', scopes: [] },
      { sha256: sha('two'), principal: 'b', scopes: ['x'] },
    ])
    expect((await tokens.find('two'))?.principal).toBe('b')
    expect(await tokens.find('three')).toBeUndefined()
    expect(await tokens.find('')).toBeUndefined()
    expect(() => new StaticTokens([{ sha256: 'short', principal: 'a', scopes: [] }])).toThrow()
  })
})

describe('mode none', () => {
  it('makes every request the anonymous principal, whatever it sends', async () => {
    const auth = createAuthenticator(AuthSettingsSchema.parse({}))
    expect(auth.mode).toBe('none')
    for (const header of [undefined, 'Bearer whatever', 'Basic Zm9vOmJhcg==']) {
      expect(principalOf(await auth.authenticate(request(header), RESOURCE))).toEqual({
        id: 'anonymous',
        scopes: [],
        method: 'anonymous',
      })
    }
  })
})

describe('mode bearer', () => {
  const auth = createAuthenticator(
    AuthSettingsSchema.parse({
      mode: 'bearer',
      tokens: [
        { sha256: sha('ci-token'), principal: 'ci-bot', scopes: ['mcp:tools', 'mcp:read'] },
        { sha256: sha('reader-token'), principal: 'reader', scopes: ['mcp:read'] },
      ],
      requiredScopes: ['mcp:tools'],
    })
  )

  it('accepts a right token with the required scopes', async () => {
    expect(principalOf(await auth.authenticate(request('Bearer ci-token'), RESOURCE))).toEqual({
      id: 'ci-bot',
      scopes: ['mcp:tools', 'mcp:read'],
      method: 'bearer',
    })
    // The scheme is case-insensitive (RFC 7235); surrounding spaces are tolerated.
    expect(principalOf(await auth.authenticate(request('bearer  ci-token '), RESOURCE)).id).toBe(
      'ci-bot'
    )
  })

  it('answers 401 without an error code when no token is sent', async () => {
    const failure = failureOf(await auth.authenticate(request(), RESOURCE))
    expect(failure).toEqual({
      status: 401,
      reason: 'missing_token',
      message: 'authentication required: send Authorization: Bearer <token>',
      headers: {
        'www-authenticate': `Bearer resource_metadata="${METADATA}", scope="mcp:tools"`,
      },
    })
  })

  it('treats other schemes as no token', async () => {
    const failure = failureOf(await auth.authenticate(request('Basic Y2k6Y2ktdG9rZW4='), RESOURCE))
    expect(failure.status).toBe(401)
    expect(failure.reason).toBe('missing_token')
    expect(failure.headers['www-authenticate']).not.toContain('error=')
  })

  it('never reads a token from the query string', async () => {
    const failure = failureOf(
      await auth.authenticate(request(undefined, `${RESOURCE}?access_token=ci-token`), RESOURCE)
    )
    expect(failure.status).toBe(401)
    expect(failure.reason).toBe('missing_token')
    expect(failure.message).toMatch(/query string are not accepted/)
  })

  it('answers 401 invalid_token for a wrong token', async () => {
    const failure = failureOf(await auth.authenticate(request('Bearer not-a-token'), RESOURCE))
    expect(failure).toEqual({
      status: 401,
      reason: 'unknown_token',
      message: 'unknown token',
      headers: {
        'www-authenticate': `Bearer resource_metadata="${METADATA}", scope="mcp:tools", error="invalid_token", error_description="unknown token"`,
      },
    })
  })

  it.each([
    ['no token after the scheme', 'Bearer'],
    ['an empty token', 'Bearer '],
    ['two tokens', 'Bearer a b'],
    ['two headers combined', 'Bearer ci-token, Bearer other'],
    ['a quoted token', 'Bearer "ci-token"'],
    ['a non-ASCII character', 'Bearer ci-token\u00e9'],
    ['an oversized token', `Bearer ${'a'.repeat(20_000)}`],
  ])('answers 401 for a malformed header: %s', async (_, header) => {
    const failure = failureOf(await auth.authenticate(request(header), RESOURCE))
    expect(failure.status).toBe(401)
    expect(['malformed_token', 'missing_token']).toContain(failure.reason)
    if (failure.reason === 'malformed_token')
      expect(failure.headers['www-authenticate']).toContain('error="invalid_token"')
  })

  it('answers 403 insufficient_scope for a right token without the required scope', async () => {
    const failure = failureOf(await auth.authenticate(request('Bearer reader-token'), RESOURCE))
    expect(failure).toEqual({
      status: 403,
      reason: 'insufficient_scope',
      message: 'the token lacks a required scope (mcp:tools)',
      headers: {
        'www-authenticate': `Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="${METADATA}"`,
      },
    })
  })

  it('never puts the presented token in a failure', async () => {
    const secret = 'sk-live-0123456789'
    const failure = failureOf(await auth.authenticate(request(`Bearer ${secret}`), RESOURCE))
    expect(JSON.stringify(failure)).not.toContain(secret)
    const response = authFailureError(failure).toResponse()
    expect(await response.text()).not.toContain(secret)
  })
})

describe('authFailureError', () => {
  it('turns a failure into a JSON-RPC error response with its status and headers', async () => {
    const auth = createAuthenticator(
      AuthSettingsSchema.parse({ mode: 'bearer', tokens: [{ sha256: sha('x'), principal: 'p' }] })
    )
    const failure = failureOf(await auth.authenticate(request(), RESOURCE))
    const response = authFailureError(failure, 7).toResponse()
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${METADATA}"`)
    expect(await response.json()).toEqual({
      jsonrpc: '2.0',
      id: 7,
      error: {
        code: -32600,
        message: 'Unauthorized: authentication required: send Authorization: Bearer <token>',
        data: { reason: 'missing_token' },
      },
    })
  })
})

describe('mode jwt with inline keys', () => {
  const ISSUER = 'https://id.example.com/'
  let privateKey: CryptoKey
  let settings: ReturnType<typeof AuthSettingsSchema.parse>
  const now = Date.UTC(2026, 0, 1) // a fixed clock
  const sign = (claims: Record<string, unknown>, exp = now / 1000 + 300) =>
    new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setIssuedAt(now / 1000)
      .setExpirationTime(exp)
      .sign(privateKey)

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256')
    privateKey = pair.privateKey
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' }
    settings = AuthSettingsSchema.parse({
      mode: 'jwt',
      issuer: ISSUER,
      jwks: { keys: [jwk] },
      requiredScopes: ['mcp'],
      scopeClaims: ['scope', 'scp', 'roles'],
    })
  })

  it('accepts a token for this resource and collects scopes from every scope claim', async () => {
    const auth = createAuthenticator(settings, { now: () => now })
    const token = await sign({
      sub: 'alice',
      aud: RESOURCE,
      scope: 'mcp read',
      scp: ['write'],
      roles: 'admin',
    })
    expect(principalOf(await auth.authenticate(request(`Bearer ${token}`), RESOURCE))).toEqual({
      id: 'alice',
      scopes: ['mcp', 'read', 'write', 'admin'],
      method: 'jwt',
    })
  })

  it('checks the audience against the requested resource by default', async () => {
    const auth = createAuthenticator(settings, { now: () => now })
    const token = await sign({ sub: 'alice', aud: RESOURCE, scope: 'mcp' })
    const other = 'https://mcp.example.com/other/mcp'
    const failure = failureOf(await auth.authenticate(request(`Bearer ${token}`, other), other))
    expect(failure.reason).toBe('wrong_audience')
    expect(failure.headers['www-authenticate']).toContain(
      'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/other/mcp"'
    )
  })

  it('accepts a configured audience instead', async () => {
    const auth = createAuthenticator(
      { ...settings, audience: ['api://ferry'] } as typeof settings,
      {
        now: () => now,
      }
    )
    const good = await sign({ sub: 'alice', aud: ['api://ferry', 'x'], scope: 'mcp' })
    const bad = await sign({ sub: 'alice', aud: RESOURCE, scope: 'mcp' })
    expect(principalOf(await auth.authenticate(request(`Bearer ${good}`), RESOURCE)).id).toBe(
      'alice'
    )
    expect(failureOf(await auth.authenticate(request(`Bearer ${bad}`), RESOURCE)).reason).toBe(
      'wrong_audience'
    )
  })

  it('uses the configured principal claim and refuses tokens without it', async () => {
    const auth = createAuthenticator({ ...settings, principalClaim: 'oid' } as typeof settings, {
      now: () => now,
    })
    const good = await sign({ sub: 'x', oid: 'object-id', aud: RESOURCE, scope: 'mcp' })
    const bad = await sign({ sub: 'x', aud: RESOURCE, scope: 'mcp' })
    expect(principalOf(await auth.authenticate(request(`Bearer ${good}`), RESOURCE)).id).toBe(
      'object-id'
    )
    const failure = failureOf(await auth.authenticate(request(`Bearer ${bad}`), RESOURCE))
    expect(failure).toMatchObject({ status: 401, reason: 'invalid_claims' })
  })

  it('refuses a token without exp', async () => {
    const auth = createAuthenticator(settings, { now: () => now })
    const token = await new SignJWT({ sub: 'alice', aud: RESOURCE, scope: 'mcp' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .sign(privateKey)
    expect(failureOf(await auth.authenticate(request(`Bearer ${token}`), RESOURCE))).toMatchObject({
      status: 401,
      reason: 'invalid_claims',
      message: 'the token has no expiry (exp claim)',
    })
  })

  it('honours the injected clock and the skew', async () => {
    const auth = createAuthenticator(settings, { now: () => now + 330_000 })
    const token = await sign({ sub: 'alice', aud: RESOURCE, scope: 'mcp' }) // exp = now + 300 s
    expect(principalOf(await auth.authenticate(request(`Bearer ${token}`), RESOURCE)).id).toBe(
      'alice'
    )
    const later = createAuthenticator(settings, { now: () => now + 361_000 })
    expect(failureOf(await later.authenticate(request(`Bearer ${token}`), RESOURCE)).reason).toBe(
      'expired'
    )
  })

  it('answers 403 when the token lacks a required scope', async () => {
    const auth = createAuthenticator(settings, { now: () => now })
    const token = await sign({ sub: 'alice', aud: RESOURCE, scope: 'read' })
    expect(failureOf(await auth.authenticate(request(`Bearer ${token}`), RESOURCE))).toMatchObject({
      status: 403,
      reason: 'insufficient_scope',
    })
  })

  it('answers 401 invalid_token for garbage', async () => {
    const auth = createAuthenticator(settings, { now: () => now })
    for (const token of ['abc', 'a.b.c', 'eyJhbGciOiJFUzI1NiJ9.e30']) {
      expect(
        failureOf(await auth.authenticate(request(`Bearer ${token}`), RESOURCE))
      ).toMatchObject({
        status: 401,
        reason: 'malformed_token',
      })
    }
  })
})

describe('createCatalogAuthenticators', () => {
  it('shares the bridge authenticator and builds one per server override', () => {
    const catalog = parseCatalog(`
bridge:
  auth: { mode: bearer, tokens: [{ sha256: ${sha('a')}, principal: a }] }
servers:
  one: { runtime: local, command: x }
  two: { runtime: local, command: x }
  own: { runtime: local, command: x, auth: { mode: none } }
`)
    const authenticators = createCatalogAuthenticators(catalog)
    expect(authenticators.one).toBe(authenticators.two)
    expect(authenticators.one?.mode).toBe('bearer')
    expect(authenticators.own?.mode).toBe('none')
  })
})
