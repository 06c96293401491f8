/** @module Tests for RFC 9728 protected resource metadata: URIs, well-known paths, the routes. */
import { createHash } from 'node:crypto'
import { AuthSettingsSchema, type BearerAuthSettings, type JwtAuthSettings } from '@ferry/shared'
import { describe, expect, it } from 'vitest'
import { createAuthenticator } from './authenticator.ts'
import {
  canonicalResourceUri,
  protectedResourceMetadata,
  protectedResourceRoutes,
  resourceForRequest,
  resourceMetadataUrl,
  wellKnownPaths,
} from './resource-metadata.ts'

const sha = (token: string) => createHash('sha256').update(token).digest('base64url')

const jwt = AuthSettingsSchema.parse({
  mode: 'jwt',
  issuer: 'https://id.example.com/realms/ferry',
  jwksUri: 'https://id.example.com/realms/ferry/protocol/openid-connect/certs',
  requiredScopes: ['mcp:tools'],
  scopesSupported: ['mcp:tools', 'mcp:admin'],
  resourceDocumentation: 'https://docs.example.com/ferry',
  resourceName: 'Ferry',
}) as JwtAuthSettings
const bearer = AuthSettingsSchema.parse({
  mode: 'bearer',
  tokens: [{ sha256: sha('t'), principal: 'ci' }],
}) as BearerAuthSettings
const none = AuthSettingsSchema.parse({})

describe('resource URIs', () => {
  it('builds the canonical URI from publicUrl and the MCP path', () => {
    expect(canonicalResourceUri('https://MCP.Example.com', '/github/mcp')).toBe(
      'https://mcp.example.com/github/mcp'
    )
    expect(canonicalResourceUri('https://mcp.example.com:443/ferry/', '/mcp')).toBe(
      'https://mcp.example.com/ferry/mcp'
    )
    expect(canonicalResourceUri('http://127.0.0.1:8080', '/mcp')).toBe('http://127.0.0.1:8080/mcp')
  })

  it('takes the request URL only when there is no publicUrl', () => {
    const request = new Request('http://localhost:3000/github/mcp?x=1', { method: 'POST' })
    expect(resourceForRequest(request, '/github/mcp', undefined)).toBe(
      'http://localhost:3000/github/mcp'
    )
    expect(resourceForRequest(request, '/github/mcp', 'https://mcp.example.com')).toBe(
      'https://mcp.example.com/github/mcp'
    )
  })

  it('inserts the well-known prefix before the resource path (RFC 9728 §3.1)', () => {
    expect(resourceMetadataUrl('https://mcp.example.com/github/mcp')).toBe(
      'https://mcp.example.com/.well-known/oauth-protected-resource/github/mcp'
    )
    expect(resourceMetadataUrl('https://mcp.example.com/mcp')).toBe(
      'https://mcp.example.com/.well-known/oauth-protected-resource/mcp'
    )
    expect(resourceMetadataUrl('https://mcp.example.com')).toBe(
      'https://mcp.example.com/.well-known/oauth-protected-resource'
    )
    expect(resourceMetadataUrl('https://mcp.example.com/ferry/x/mcp')).toBe(
      'https://mcp.example.com/.well-known/oauth-protected-resource/ferry/x/mcp'
    )
  })

  it('lists the bridge paths serving an endpoint document', () => {
    expect(wellKnownPaths('/github/mcp')).toEqual({
      pathInserted: ['/.well-known/oauth-protected-resource/github/mcp'],
      root: '/.well-known/oauth-protected-resource',
    })
    expect(wellKnownPaths('/mcp', 'https://mcp.example.com/ferry')).toEqual({
      pathInserted: [
        '/.well-known/oauth-protected-resource/mcp',
        '/.well-known/oauth-protected-resource/ferry/mcp',
      ],
      root: '/.well-known/oauth-protected-resource',
    })
  })
})

describe('protectedResourceMetadata', () => {
  it('describes a jwt-protected endpoint', () => {
    expect(protectedResourceMetadata('https://mcp.example.com/github/mcp', jwt)).toEqual({
      resource: 'https://mcp.example.com/github/mcp',
      authorization_servers: ['https://id.example.com/realms/ferry'],
      scopes_supported: ['mcp:tools', 'mcp:admin'],
      bearer_methods_supported: ['header'],
      resource_documentation: 'https://docs.example.com/ferry',
      resource_name: 'Ferry',
    })
  })

  it('omits what a static-token endpoint does not have', () => {
    expect(protectedResourceMetadata('https://mcp.example.com/mcp', bearer)).toEqual({
      resource: 'https://mcp.example.com/mcp',
      bearer_methods_supported: ['header'],
    })
  })
})

describe('protectedResourceRoutes', () => {
  const app = protectedResourceRoutes({
    resources: [
      { path: '/mcp', auth: jwt },
      { path: '/github/mcp', auth: jwt },
      { path: '/ci/mcp', auth: bearer },
      { path: '/open/mcp', auth: none },
    ],
    publicUrl: 'https://mcp.example.com',
  })

  it('serves the path-inserted document of each protected endpoint', async () => {
    const response = await app.request('/.well-known/oauth-protected-resource/github/mcp')
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json')
    expect(response.headers.get('access-control-allow-origin')).toBe('*')
    expect(await response.json()).toMatchObject({
      resource: 'https://mcp.example.com/github/mcp',
      authorization_servers: ['https://id.example.com/realms/ferry'],
    })
    const ci = await app.request('/.well-known/oauth-protected-resource/ci/mcp')
    expect(await ci.json()).toEqual({
      resource: 'https://mcp.example.com/ci/mcp',
      bearer_methods_supported: ['header'],
    })
  })

  it('serves the default endpoint at the root and at /mcp', async () => {
    for (const path of [
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/mcp',
    ]) {
      const response = await app.request(path)
      expect(response.status).toBe(200)
      expect(((await response.json()) as { resource: string }).resource).toBe(
        'https://mcp.example.com/mcp'
      )
    }
  })

  it('has no document for unauthenticated or unknown endpoints', async () => {
    expect((await app.request('/.well-known/oauth-protected-resource/open/mcp')).status).toBe(404)
    expect((await app.request('/.well-known/oauth-protected-resource/nope/mcp')).status).toBe(404)
    const noRoot = protectedResourceRoutes({ resources: [{ path: '/github/mcp', auth: jwt }] })
    expect((await noRoot.request('/.well-known/oauth-protected-resource')).status).toBe(404)
  })

  it('answers CORS preflights and HEAD', async () => {
    const preflight = await app.request('/.well-known/oauth-protected-resource/github/mcp', {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' },
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get('access-control-allow-methods')).toContain('GET')
    const head = await app.request('/.well-known/oauth-protected-resource/github/mcp', {
      method: 'HEAD',
    })
    expect(head.status).toBe(200)
  })

  it('builds the resource from the request when there is no publicUrl', async () => {
    const local = protectedResourceRoutes({ resources: [{ path: '/mcp', auth: bearer }] })
    const response = await local.request(
      'http://127.0.0.1:8080/.well-known/oauth-protected-resource'
    )
    expect(((await response.json()) as { resource: string }).resource).toBe(
      'http://127.0.0.1:8080/mcp'
    )
  })

  it('also serves paths carrying the publicUrl prefix', async () => {
    const prefixed = protectedResourceRoutes({
      resources: [{ path: '/github/mcp', auth: jwt }],
      publicUrl: 'https://example.com/ferry',
    })
    for (const path of [
      '/.well-known/oauth-protected-resource/github/mcp',
      '/.well-known/oauth-protected-resource/ferry/github/mcp',
    ]) {
      const response = await prefixed.request(path)
      expect(((await response.json()) as { resource: string }).resource).toBe(
        'https://example.com/ferry/github/mcp'
      )
    }
  })

  it("serves the document a 401's resource_metadata points to", async () => {
    const resource = canonicalResourceUri('https://mcp.example.com', '/github/mcp')
    const result = await createAuthenticator(jwt).authenticate(
      new Request(resource, { method: 'POST' }),
      resource
    )
    if (!('failure' in result)) throw new Error('expected a failure')
    const challenge = result.failure.headers['www-authenticate']!
    const url = /resource_metadata="([^"]+)"/.exec(challenge)?.[1]
    expect(url).toBe('https://mcp.example.com/.well-known/oauth-protected-resource/github/mcp')
    const response = await app.request(new URL(url!).pathname)
    expect(((await response.json()) as { resource: string }).resource).toBe(resource)
  })
})
