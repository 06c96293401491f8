/**
 * @module
 * OAuth 2.0 Protected Resource Metadata (RFC 9728) for the bridge's MCP endpoints: the
 * canonical resource URI of an endpoint (RFC 8707, the token audience), the well-known URLs
 * where clients discover its authorization servers, the document itself, and a Hono sub-app
 * serving it.
 *
 * MCP clients look for the metadata in the `resource_metadata` parameter of a 401's
 * `WWW-Authenticate`, then at the path-inserted URL
 * (`/.well-known/oauth-protected-resource/<server>/mcp`), then at the root
 * (`/.well-known/oauth-protected-resource`). The root document describes the default server's
 * `/mcp`, the one endpoint a bare host name means.
 */
import { Hono } from 'hono'
import type { AuthSettings, BearerAuthSettings, JwtAuthSettings } from '@ferry/shared'

/** Path prefix of the metadata documents (RFC 9728 §3). */
export const WELL_KNOWN_PREFIX = '/.well-known/oauth-protected-resource'

/** The RFC 9728 document the bridge publishes for one MCP endpoint. */
export interface ProtectedResourceMetadata {
  resource: string
  authorization_servers?: string[]
  scopes_supported?: string[]
  bearer_methods_supported: ['header']
  resource_documentation?: string
  resource_name?: string
}

/** Auth settings of a protected endpoint (not `mode: none`). */
export type ProtectedAuthSettings = BearerAuthSettings | JwtAuthSettings

const trimSlashes = (path: string): string => path.replace(/\/+$/, '')

/**
 * The canonical URI of an MCP endpoint (RFC 8707 §2): `base` (normally `bridge.publicUrl`,
 * which may carry a path prefix) followed by `mcpPath` (`/mcp` or `/<server>/mcp`). Scheme and
 * host are lowercased and a default port dropped, as `URL` does; no trailing slash, no query.
 */
export function canonicalResourceUri(base: string, mcpPath: string): string {
  const url = new URL(base)
  return `${url.origin}${trimSlashes(url.pathname)}${mcpPath}`
}

/**
 * The canonical URI of the endpoint a request was made to, from `publicUrl` when set, otherwise
 * from the request's own URL (its `Host` header: acceptable on loopback only, which
 * `checkAuthStartup` enforces for `jwt`).
 */
export function resourceForRequest(
  request: Request,
  mcpPath: string,
  publicUrl: string | undefined
): string {
  return canonicalResourceUri(publicUrl ?? new URL(request.url).origin, mcpPath)
}

/** The path-inserted metadata URL of a resource (RFC 9728 §3.1), for `resource_metadata`. */
export function resourceMetadataUrl(resource: string): string {
  const url = new URL(resource)
  return `${url.origin}${WELL_KNOWN_PREFIX}${trimSlashes(url.pathname)}`
}

/**
 * The bridge paths that serve the metadata of the endpoint at `mcpPath`: the path-inserted one
 * (also with `publicUrl`'s path prefix, for proxies that forward paths unchanged) and, for
 * the default server's `/mcp`, the root.
 */
export function wellKnownPaths(
  mcpPath: string,
  publicUrl?: string
): { pathInserted: string[]; root: string } {
  const prefix = publicUrl === undefined ? '' : trimSlashes(new URL(publicUrl).pathname)
  const paths = [`${WELL_KNOWN_PREFIX}${mcpPath}`]
  if (prefix) paths.push(`${WELL_KNOWN_PREFIX}${prefix}${mcpPath}`)
  return { pathInserted: paths, root: WELL_KNOWN_PREFIX }
}

/** The RFC 9728 document for `resource` (its canonical URI) protected by `auth`. */
export function protectedResourceMetadata(
  resource: string,
  auth: ProtectedAuthSettings
): ProtectedResourceMetadata {
  return {
    resource,
    ...(auth.authorizationServers.length
      ? { authorization_servers: [...auth.authorizationServers] }
      : {}),
    ...(auth.scopesSupported.length ? { scopes_supported: [...auth.scopesSupported] } : {}),
    // RFC 6750 §2.1 only: tokens in a form body or the query string are never accepted.
    bearer_methods_supported: ['header'],
    ...(auth.resourceDocumentation === undefined
      ? {}
      : { resource_documentation: auth.resourceDocumentation }),
    ...(auth.resourceName === undefined ? {} : { resource_name: auth.resourceName }),
  }
}

/** One MCP endpoint whose metadata the bridge serves. */
export interface ProtectedResourceRoute {
  /** The endpoint's path on the bridge: `/mcp` or `/<server>/mcp`. */
  path: string
  /** Its effective auth settings; endpoints with `mode: none` get no document (404). */
  auth: AuthSettings
}

export interface ProtectedResourceRoutesOptions {
  resources: readonly ProtectedResourceRoute[]
  /** `bridge.publicUrl`. Without it, resource URIs come from each request's URL. */
  publicUrl?: string
  /** The endpoint whose document the root URL serves. Default `/mcp` when it is listed. */
  rootResource?: string
}

// Metadata is public and read by browser-based clients from other origins (the MCP SDK sends
// `MCP-Protocol-Version`, which needs a preflight).
const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, OPTIONS',
  'access-control-allow-headers': '*',
  'access-control-max-age': '86400',
}

/**
 * A Hono app serving the metadata documents of `resources` at their well-known paths, with
 * CORS for browser clients. Mount it before the MCP routes, e.g. `app.route('/', sub)`.
 */
export function protectedResourceRoutes(options: ProtectedResourceRoutesOptions): Hono {
  const app = new Hono()
  const serve = (path: string, mcpPath: string, auth: ProtectedAuthSettings) => {
    app.get(path, (c) => {
      const resource = resourceForRequest(c.req.raw, mcpPath, options.publicUrl)
      return new Response(JSON.stringify(protectedResourceMetadata(resource, auth)), {
        headers: {
          'content-type': 'application/json',
          'cache-control': 'public, max-age=300',
          ...CORS_HEADERS,
        },
      })
    })
    app.options(path, () => new Response(null, { status: 204, headers: CORS_HEADERS }))
  }
  const rootPath =
    options.rootResource ?? (options.resources.some((r) => r.path === '/mcp') ? '/mcp' : undefined)
  const seen = new Set<string>()
  for (const { path, auth } of options.resources) {
    if (auth.mode === 'none') continue
    const paths = wellKnownPaths(path, options.publicUrl)
    const targets = path === rootPath ? [...paths.pathInserted, paths.root] : paths.pathInserted
    for (const target of targets) {
      if (seen.has(target)) continue
      seen.add(target)
      serve(target, path, auth)
    }
  }
  return app
}
