/** @module Tests for per-server access control. */
import { describe, expect, it } from 'vitest'
import { accessDeniedError, checkAccess } from './access.ts'
import { type Principal, anonymousPrincipal } from './principal.ts'

const alice: Principal = { id: 'alice', scopes: ['mcp:read'], method: 'jwt' }
const bot: Principal = { id: 'ci-bot', scopes: ['mcp:github', 'mcp:read'], method: 'bearer' }
const METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/github/mcp'

describe('checkAccess', () => {
  it('admits everyone authenticated without access rules', () => {
    expect(checkAccess(undefined, alice)).toEqual({ ok: true })
    expect(checkAccess(undefined, anonymousPrincipal())).toEqual({ ok: true })
  })

  it('admits listed principals', () => {
    const access = { principals: ['alice'] }
    expect(checkAccess(access, alice)).toEqual({ ok: true })
    expect(checkAccess(access, bot)).toMatchObject({ ok: false, status: 403, headers: {} })
  })

  it('admits principals holding every listed scope', () => {
    const access = { scopes: ['mcp:github', 'mcp:read'] }
    expect(checkAccess(access, bot)).toEqual({ ok: true })
    expect(checkAccess(access, alice, { resourceMetadataUrl: METADATA })).toEqual({
      ok: false,
      status: 403,
      message: 'this principal is not allowed to use this server',
      headers: {
        'www-authenticate': `Bearer error="insufficient_scope", scope="mcp:github mcp:read", resource_metadata="${METADATA}"`,
      },
    })
  })

  it('admits when either the principal list or the scopes grant access', () => {
    const access = { principals: ['alice'], scopes: ['mcp:github'] }
    expect(checkAccess(access, alice)).toEqual({ ok: true })
    expect(checkAccess(access, bot)).toEqual({ ok: true })
    expect(checkAccess(access, { id: 'eve', scopes: [], method: 'jwt' })).toMatchObject({
      ok: false,
    })
  })

  it('matches ids exactly', () => {
    const access = { principals: ['alice'] }
    for (const id of ['Alice', 'alice ', 'alic', 'alice2']) {
      expect(checkAccess(access, { ...alice, id }).ok).toBe(false)
    }
  })

  it('denies the anonymous principal without a scope challenge', () => {
    const denied = checkAccess({ scopes: ['x'] }, anonymousPrincipal())
    expect(denied).toEqual({
      ok: false,
      status: 403,
      message: 'this server requires an authenticated principal',
      headers: {},
    })
  })

  it('denies everyone with an empty principal list and no scopes', () => {
    expect(checkAccess({ principals: [] }, alice).ok).toBe(false)
    expect(checkAccess({ principals: [] }, bot).ok).toBe(false)
  })

  it('turns a denial into a 403 JSON-RPC error', async () => {
    const denied = checkAccess({ scopes: ['mcp:github'] }, alice)
    if (denied.ok) throw new Error('expected a denial')
    const response = accessDeniedError(denied, 1).toResponse()
    expect(response.status).toBe(403)
    expect(response.headers.get('www-authenticate')).toContain('insufficient_scope')
    expect(await response.json()).toMatchObject({
      id: 1,
      error: { code: -32600, data: { reason: 'access_denied' } },
    })
  })
})
