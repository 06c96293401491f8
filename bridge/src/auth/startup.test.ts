/** @module Tests for the start-up checks of the auth settings. */
import { createHash } from 'node:crypto'
import { AuthSettingsSchema, parseCatalog } from '@ferry/shared'
import { describe, expect, it } from 'vitest'
import { checkAuthStartup, checkCatalogAuth, isLoopbackHost } from './startup.ts'

const sha = (token: string) => createHash('sha256').update(token).digest('base64url')
const none = AuthSettingsSchema.parse({})
const forced = AuthSettingsSchema.parse({ allowUnauthenticated: true })
const bearer = AuthSettingsSchema.parse({
  mode: 'bearer',
  tokens: [{ sha256: sha('t'), principal: 'p' }],
})
const jwt = AuthSettingsSchema.parse({
  mode: 'jwt',
  issuer: 'https://id.example.com/',
  jwksUri: 'https://id.example.com/jwks',
})

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['', false],
    ['10.0.0.5', false],
    ['192.168.1.2', false],
    ['mcp.example.com', false],
    ['localhost.example.com', false],
    ['127.0.0.1.nip.io', false],
  ])('%j → %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected)
  })
})

describe('checkAuthStartup', () => {
  it('allows mode none on loopback without warnings', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1']) {
      expect(checkAuthStartup(none, host)).toEqual({ ok: true, warnings: [] })
    }
  })

  it('refuses mode none on a non-loopback address', () => {
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'mcp.example.com']) {
      const result = checkAuthStartup(none, host)
      expect(result.ok).toBe(false)
      if (!result.ok) {
        expect(result.error).toContain(`without authentication on ${host}`)
        expect(result.error).toContain('bridge.auth.allowUnauthenticated: true')
      }
    }
  })

  it('warns loudly when unauthenticated serving is forced', () => {
    const result = checkAuthStartup(forced, '0.0.0.0')
    expect(result.ok).toBe(true)
    if (result.ok) {
      expect(result.warnings).toHaveLength(1)
      expect(result.warnings[0]).toMatch(/^WARNING: .*ANYONE WHO CAN REACH IT CAN START WORKLOADS/)
    }
  })

  it('warns when a loopback bridge has a public URL (a proxy in front)', () => {
    const result = checkAuthStartup(none, '127.0.0.1', { publicUrl: 'https://mcp.example.com' })
    expect(result).toMatchObject({ ok: true, warnings: [expect.stringMatching(/proxy/)] })
    expect(checkAuthStartup(none, '127.0.0.1', { publicUrl: 'http://localhost:8080' })).toEqual({
      ok: true,
      warnings: [],
    })
  })

  it('allows authenticated modes anywhere', () => {
    expect(checkAuthStartup(bearer, '0.0.0.0')).toEqual({ ok: true, warnings: [] })
    expect(checkAuthStartup(jwt, '0.0.0.0', { publicUrl: 'https://mcp.example.com' })).toEqual({
      ok: true,
      warnings: [],
    })
  })

  it('refuses jwt on a non-loopback address without publicUrl or audience', () => {
    const result = checkAuthStartup(jwt, '0.0.0.0')
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.error).toMatch(/needs bridge.publicUrl/)
    expect(
      checkAuthStartup({ ...jwt, audience: ['api://ferry'] } as typeof jwt, '0.0.0.0').ok
    ).toBe(true)
    expect(checkAuthStartup(jwt, '127.0.0.1').ok).toBe(true)
  })

  it('warns about tokens over plain http to a remote public URL', () => {
    const result = checkAuthStartup(bearer, '0.0.0.0', { publicUrl: 'http://mcp.example.com' })
    expect(result).toMatchObject({ ok: true, warnings: [expect.stringMatching(/cleartext/)] })
  })
})

describe('checkCatalogAuth', () => {
  it('checks the bridge and every server override, naming their paths', () => {
    const catalog = parseCatalog(`
bridge:
  host: 0.0.0.0
  auth: { mode: bearer, tokens: [{ sha256: ${sha('t')}, principal: p }] }
servers:
  ok: { runtime: local, command: x }
  open: { runtime: local, command: x, auth: { mode: none } }
`)
    const result = checkCatalogAuth(catalog)
    expect(result.ok).toBe(false)
    if (!result.ok) {
      expect(result.error).toContain('servers.open.auth.mode')
      expect(result.error).not.toContain('bridge.auth.mode')
    }
  })

  it('collects warnings, including access rules nobody can meet', () => {
    const catalog = parseCatalog(`
bridge: { host: 0.0.0.0, auth: { allowUnauthenticated: true } }
servers:
  a: { runtime: local, command: x, access: { principals: [alice] } }
  b: { runtime: local, command: x, access: { principals: [anonymous] } }
`)
    const result = checkCatalogAuth(catalog)
    expect(result.ok).toBe(true)
    if (result.ok) {
      expect(result.warnings).toHaveLength(2)
      expect(result.warnings[1]).toMatch(/^servers\.a\.access admits no one/)
    }
  })

  it('passes the default catalog on loopback', () => {
    expect(
      checkCatalogAuth(parseCatalog('servers: { a: { runtime: local, command: x } }'))
    ).toEqual({
      ok: true,
      warnings: [],
    })
  })
})
