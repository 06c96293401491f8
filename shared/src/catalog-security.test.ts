import { describe, expect, expectTypeOf, it } from 'vitest'
import { CatalogError, parseCatalog } from './catalog.ts'
import {
  AuthSettingsSchema,
  JWT_ALGORITHMS,
  type AuthSettings,
  type JwtAuthSettings,
} from './catalog-security.ts'

const SERVERS = `
servers:
  a:
    runtime: local
    command: node
`
const withBridge = (bridge: string): string => `bridge:\n${indent(bridge, 2)}\n${SERVERS}`
const withServer = (extra: string): string => `${SERVERS}${indent(extra, 4)}\n`
const indent = (text: string, spaces: number): string =>
  text
    .trim()
    .split('\n')
    .map((line) => ' '.repeat(spaces) + line)
    .join('\n')

const issuesOf = (text: string): { path: string; message: string }[] => {
  try {
    parseCatalog(text, 'catalog.yaml')
  } catch (error) {
    expect(error).toBeInstanceOf(CatalogError)
    return (error as CatalogError).issues
  }
  throw new Error('expected the catalog to be rejected')
}

// base64url SHA-256 of "secret-token" and "other-token".
const HASH = 'kwu9xRtq7VwqVnj9bije56BeiktkPPwLRCfD77hsDZQ'
const HASH2 = 'bGcWO77ZifIysxrMTwTfVLMShb_AG9AixzW3HgQaR1Q'

describe('bridge.auth', () => {
  it('defaults to mode none, loopback only', () => {
    expect(parseCatalog(SERVERS).bridge.auth).toEqual({
      mode: 'none',
      allowUnauthenticated: false,
    })
    expect(parseCatalog(withBridge('auth: { allowUnauthenticated: true }')).bridge.auth).toEqual({
      mode: 'none',
      allowUnauthenticated: true,
    })
  })

  it('parses static bearer tokens stored as hashes', () => {
    const auth = parseCatalog(
      withBridge(`
auth:
  mode: bearer
  tokens:
    - { sha256: ${HASH}, principal: ci-bot, scopes: [mcp:tools] }
    - { sha256: ${HASH2}, principal: alice }
  requiredScopes: [mcp:tools]
`)
    ).bridge.auth
    expect(auth).toEqual({
      mode: 'bearer',
      tokens: [
        { sha256: HASH, principal: 'ci-bot', scopes: ['mcp:tools'] },
        { sha256: HASH2, principal: 'alice', scopes: [] },
      ],
      requiredScopes: ['mcp:tools'],
      scopesSupported: ['mcp:tools'],
      authorizationServers: [],
    })
  })

  it('fills jwt defaults: audience from the endpoint, issuer as authorization server', () => {
    const auth = parseCatalog(
      withBridge(`
auth:
  mode: jwt
  issuer: https://tenant.auth0.com/
  jwksUri: https://tenant.auth0.com/.well-known/jwks.json
`)
    ).bridge.auth
    expect(auth).toEqual({
      mode: 'jwt',
      issuer: 'https://tenant.auth0.com/',
      jwksUri: 'https://tenant.auth0.com/.well-known/jwks.json',
      clockSkew: 60_000,
      algorithms: [...JWT_ALGORITHMS],
      principalClaim: 'sub',
      scopeClaims: ['scope', 'scp'],
      jwksCooldown: 30_000,
      jwksCacheMaxAge: 600_000,
      jwksTimeout: 5000,
      requiredScopes: [],
      scopesSupported: [],
      authorizationServers: ['https://tenant.auth0.com/'],
    })
  })

  it('keeps explicit jwt values', () => {
    const auth = parseCatalog(
      withBridge(`
auth:
  mode: jwt
  issuer: https://login.microsoftonline.com/tid/v2.0
  jwksUri: https://login.microsoftonline.com/tid/discovery/v2.0/keys
  audience: api://ferry
  requiredScopes: [mcp.use]
  scopesSupported: [mcp.use, mcp.admin]
  clockSkew: 10s
  algorithms: [RS256]
  principalClaim: oid
  scopeClaims: [scp, roles]
  jwksCooldown: 0
  jwksCacheMaxAge: 1h
  jwksTimeout: 2s
  authorizationServers: [https://login.microsoftonline.com/tid/v2.0]
  resourceDocumentation: https://docs.example.com/mcp
  resourceName: Example MCP
`)
    ).bridge.auth as JwtAuthSettings
    expect(auth).toMatchObject({
      audience: ['api://ferry'],
      requiredScopes: ['mcp.use'],
      scopesSupported: ['mcp.use', 'mcp.admin'],
      clockSkew: 10_000,
      algorithms: ['RS256'],
      principalClaim: 'oid',
      scopeClaims: ['scp', 'roles'],
      jwksCooldown: 0,
      jwksCacheMaxAge: 3_600_000,
      jwksTimeout: 2000,
      resourceDocumentation: 'https://docs.example.com/mcp',
      resourceName: 'Example MCP',
    })
  })

  it('accepts inline public keys and http only on loopback', () => {
    const auth = AuthSettingsSchema.parse({
      mode: 'jwt',
      issuer: 'http://127.0.0.1:9999',
      jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'k1' }] },
    })
    expect(auth).toMatchObject({ mode: 'jwt', jwks: { keys: [{ kid: 'k1' }] } })
  })

  it('requires what each mode needs', () => {
    expect(issuesOf(withBridge('auth: { mode: jwt }'))).toEqual([
      {
        path: 'bridge.auth.issuer',
        message: 'required with mode: jwt (the token issuer, compared exactly with "iss")',
      },
      {
        path: 'bridge.auth.jwksUri',
        message: 'required with mode: jwt (or give the keys inline in "jwks")',
      },
    ])
    expect(issuesOf(withBridge('auth: { mode: bearer }'))).toEqual([
      {
        path: 'bridge.auth.tokens',
        message: 'mode: bearer needs at least one token ({ sha256, principal, scopes })',
      },
    ])
    expect(
      issuesOf(
        withBridge(
          'auth: { mode: jwt, issuer: "https://i.example.com", jwksUri: "https://i.example.com/k", jwks: { keys: [{ kty: RSA }] } }'
        )
      )
    ).toEqual([{ path: 'bridge.auth.jwks', message: 'give either jwksUri or jwks, not both' }])
  })

  it('rejects fields the mode does not use, listing every mistake at once', () => {
    expect(
      issuesOf(
        withBridge(`
auth:
  mode: jwt
  issuer: http://id.example.com
  jwksUri: https://id.example.com/jwks
  tokens: []
  allowUnauthenticated: true
  clockSkew: soon
`)
      )
    ).toEqual([
      {
        path: 'bridge.auth.issuer',
        message: 'must use https (plain http is accepted only for loopback addresses)',
      },
      {
        path: 'bridge.auth.clockSkew',
        message: 'expected a duration like "30s", "15m" or milliseconds',
      },
      {
        path: 'bridge.auth.allowUnauthenticated',
        message: 'only used with mode: none (this is mode: jwt)',
      },
      { path: 'bridge.auth.tokens', message: 'only used with mode: bearer (this is mode: jwt)' },
    ])
    expect(issuesOf(withBridge('auth: { requiredScopes: [a] }'))).toEqual([
      {
        path: 'bridge.auth.requiredScopes',
        message: 'only used with mode: bearer or jwt (this is mode: none)',
      },
    ])
  })

  it('refuses raw tokens, bad hashes and duplicates in the token list', () => {
    expect(
      issuesOf(
        withBridge(`
auth:
  mode: bearer
  tokens:
    - { sha256: ferry_abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrs, principal: a }
    - { sha256: short, principal: b }
    - { sha256: ${HASH}, principal: c }
    - { sha256: ${HASH}, principal: d, scope: [x] }
`)
      )
    ).toEqual([
      {
        path: 'bridge.auth.tokens[0].sha256',
        message:
          'expected the base64url SHA-256 of the token (43 characters); this looks like a token itself, which must never be stored in the catalog',
      },
      {
        path: 'bridge.auth.tokens[1].sha256',
        message: 'expected the unpadded base64url SHA-256 of the token (43 characters)',
      },
      { path: 'bridge.auth.tokens[3].scope', message: 'unknown field (did you mean "scopes"?)' },
      {
        path: 'bridge.auth.tokens[3].sha256',
        message: 'duplicate token hash (same as tokens[2].sha256)',
      },
    ])
  })

  it('refuses private or symmetric keys inline', () => {
    const issues = issuesOf(
      withBridge(`
auth:
  mode: jwt
  issuer: https://id.example.com/
  jwks: { keys: [{ kty: RSA, n: x, e: AQAB, d: secret }, { kty: oct, k: c2VjcmV0 }] }
`)
    )
    expect(issues.map((issue) => issue.path)).toEqual([
      'bridge.auth.jwks.keys[0]',
      'bridge.auth.jwks.keys[1]',
    ])
    expect(issues[0]?.message).toMatch(/private members "d"/)
    expect(issues[1]?.message).toMatch(/symmetric key/)
  })

  it('refuses symmetric algorithms, none, and scopes that cannot be quoted', () => {
    const issues = issuesOf(
      withBridge(`
auth:
  mode: jwt
  issuer: https://id.example.com/
  jwksUri: https://id.example.com/jwks
  algorithms: [HS256, none]
  requiredScopes: ["a b", 'say"hi']
`)
    )
    expect(issues.map((issue) => issue.path).sort()).toEqual([
      'bridge.auth.algorithms[0]',
      'bridge.auth.algorithms[1]',
      'bridge.auth.requiredScopes[0]',
      'bridge.auth.requiredScopes[1]',
    ])
    expect(issues.find((issue) => issue.path === 'bridge.auth.algorithms[0]')?.message).toMatch(
      /^expected one of "RS256"/
    )
  })

  it('has a discriminated output type', () => {
    expectTypeOf<Extract<AuthSettings, { mode: 'jwt' }>['issuer']>().toEqualTypeOf<string>()
    expectTypeOf<Extract<AuthSettings, { mode: 'none' }>>().toHaveProperty('allowUnauthenticated')
  })
})

describe('servers.<name>.auth, access and limits', () => {
  it('are optional', () => {
    const server = parseCatalog(SERVERS).servers.a!
    expect(server.auth).toBeUndefined()
    expect(server.access).toBeUndefined()
    expect(server.limits).toBeUndefined()
  })

  it('replace bridge auth as a whole and need an explicit mode', () => {
    const catalog = parseCatalog(
      withServer(`
auth: { mode: bearer, tokens: [{ sha256: ${HASH}, principal: ci }] }
access: { principals: [ci], scopes: [mcp:a] }
limits: { maxSessions: 3 }
`)
    )
    expect(catalog.servers.a).toMatchObject({
      auth: { mode: 'bearer', tokens: [{ principal: 'ci' }] },
      access: { principals: ['ci'], scopes: ['mcp:a'] },
      limits: { maxSessions: 3 },
    })
    expect(issuesOf(withServer('auth: { requiredScopes: [x] }'))).toEqual([
      {
        path: 'servers.a.auth.mode',
        message: 'required (expected one of "none", "bearer", "jwt")',
      },
    ])
  })

  it('work on kubernetes servers too and report bad values by path', () => {
    expect(
      issuesOf(`
servers:
  k:
    runtime: kubernetes
    image: node:24
    command: [node]
    access: { principal: [x], scopes: [] }
    limits: { maxSessions: -1 }
`)
    ).toEqual([
      { path: 'servers.k.access.scopes', message: 'must have at least 1 entries' },
      { path: 'servers.k.access.principal', message: 'unknown field (did you mean "principals"?)' },
      { path: 'servers.k.limits.maxSessions', message: 'must be at least 0' },
    ])
  })
})

describe('bridge.limits', () => {
  it('has a documented default for every limit', () => {
    expect(parseCatalog(SERVERS).bridge.limits).toEqual({
      maxSessions: 0,
      maxSessionsPerPrincipal: 20,
      maxSessionsPerServer: 0,
      sessionRate: { perMinute: 60, burst: 20 },
      maxInFlightPerSession: 64,
      maxStreamsPerSession: 16,
      sessionCount: { refreshInterval: 5000, maxUncounted: 10 },
    })
  })

  it('keeps explicit values and rejects bad ones', () => {
    expect(
      parseCatalog(
        withBridge(`
limits:
  maxSessions: 100
  maxSessionsPerPrincipal: 0
  sessionRate: { perMinute: 0.5, burst: 1 }
  sessionCount: { refreshInterval: 2s, maxUncounted: 1 }
`)
      ).bridge.limits
    ).toMatchObject({
      maxSessions: 100,
      maxSessionsPerPrincipal: 0,
      sessionRate: { perMinute: 0.5, burst: 1 },
      sessionCount: { refreshInterval: 2000, maxUncounted: 1 },
    })
    expect(
      issuesOf(
        withBridge(`
limits:
  maxSessions: 1.5
  sessionRate: { perMinute: -1, burst: 0 }
  sessionCount: { refreshInterval: 0 }
  maxStreamPerSession: 3
`)
      )
    ).toEqual([
      { path: 'bridge.limits.maxSessions', message: 'expected an integer, got 1.5' },
      { path: 'bridge.limits.sessionRate.perMinute', message: 'must be at least 0' },
      { path: 'bridge.limits.sessionRate.burst', message: 'must be at least 1' },
      { path: 'bridge.limits.sessionCount.refreshInterval', message: 'must be greater than 0' },
      {
        path: 'bridge.limits.maxStreamPerSession',
        message: 'unknown field (did you mean "maxStreamsPerSession"?)',
      },
    ])
  })
})
