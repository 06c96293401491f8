/**
 * @module
 * The bridge's HTTP surface as a Hono app: the MCP endpoints (`/<server>/mcp`, and
 * `/mcp` for the default server), the OAuth protected resource metadata
 * (`/.well-known/oauth-protected-resource…`, when a server is protected), `/healthz`,
 * `/readyz` and `/metrics` (Prometheus). Built from plain dependencies so tests drive it
 * with `app.request()` and no socket.
 *
 * Every response carries an `x-request-id` (a sane incoming one, or a fresh one; also in the
 * logs of the request), security headers, and `cache-control: no-store` unless it has its own
 * cache policy. CORS is answered only when
 * `bridge.allowedOrigins` lists origins; otherwise there are no CORS headers and `OPTIONS`
 * on an MCP endpoint is a 405.
 */
import { randomUUID } from 'node:crypto'
import type { HttpBindings } from '@hono/node-server'
import { Hono } from 'hono'
import { ErrorCode, errorResponse } from '@ferry/shared'
import { WELL_KNOWN_PREFIX } from './auth/resource-metadata.ts'
import type { StreamableHTTPHandler } from './transport/streamable-http.ts'

export interface AppOptions {
  mcp: StreamableHTTPHandler
  /** Server served at `/mcp`; without one, `/mcp` answers 404. */
  defaultServer?: string
  /** False while the replica drains: `/readyz` then fails so load balancers move on. */
  isReady: () => boolean
  /** The metrics in the Prometheus text format. */
  metrics: () => Promise<string>
  /** The protected resource metadata routes (`protectedResourceRoutes`), when a server is protected. */
  protectedResources?: Hono
  /** `bridge.allowedOrigins`: CORS is answered for these origins (`*`: any) and only then. */
  corsOrigins?: readonly string[]
}

/** Content type of the Prometheus text exposition format. */
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8'

export const REQUEST_ID_HEADER = 'x-request-id'
/** Incoming request ids kept as they are: short, and safe in a header and a log line. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:+=/-]{1,128}$/

/** Set on every response; as entries, so a request does not list an object's. */
const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['x-content-type-options', 'nosniff'],
  ['referrer-policy', 'no-referrer'],
  ['x-frame-options', 'DENY'],
  ['content-security-policy', "default-src 'none'; frame-ancestors 'none'"],
]

const CORS_ALLOW_METHODS = 'GET, POST, DELETE'
const CORS_ALLOW_HEADERS =
  'content-type, mcp-session-id, mcp-protocol-version, authorization, last-event-id'
const CORS_EXPOSE_HEADERS = 'mcp-session-id, www-authenticate'

const jsonError = (status: number, code: number, message: string) =>
  new Response(JSON.stringify(errorResponse(null, code, message)), {
    status,
    headers: { 'content-type': 'application/json' },
  })

type Variables = { requestId: string }

/** The standard headers that do not change per request. */
const FIXED_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ...SECURITY_HEADERS,
  ['cache-control', 'no-store'],
]

/**
 * Passes to `set` the headers every response carries unless it sets its own: the request id,
 * the security headers, `cache-control: no-store`, and the CORS answer for an allowed origin.
 */
const forEachStandardHeader = (
  requestId: string,
  corsOrigin: string | undefined,
  set: (name: string, value: string) => void
) => {
  set(REQUEST_ID_HEADER, requestId)
  for (const [name, value] of FIXED_HEADERS) set(name, value)
  if (corsOrigin === undefined) return
  set('access-control-allow-origin', corsOrigin)
  set('access-control-expose-headers', CORS_EXPOSE_HEADERS)
  set('vary', 'origin')
}

export const createApp = (options: AppOptions): Hono => {
  const app = new Hono<{ Variables: Variables; Bindings: Partial<HttpBindings> }>()
  const cors = new Set((options.corsOrigins ?? []).map((origin) => origin.toLowerCase()))
  const corsAllowed = (origin: string | undefined): origin is string =>
    origin !== undefined && cors.size > 0 && (cors.has('*') || cors.has(origin.toLowerCase()))

  app.use(async (c, next) => {
    const incoming = c.req.header(REQUEST_ID_HEADER)
    const requestId =
      incoming !== undefined && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID()
    c.set('requestId', requestId)
    const origin = c.req.header('origin')
    const wellKnown = c.req.path.startsWith(WELL_KNOWN_PREFIX)
    const preflight = c.req.method === 'OPTIONS' && cors.size > 0 && !wellKnown
    const corsOrigin =
      !wellKnown && c.req.method !== 'OPTIONS' && corsAllowed(origin) ? origin : undefined
    // On Node the standard headers go onto the outgoing message, where the response's own
    // headers override them when it is written. Setting them on `c.res.headers` instead turns
    // node-server's lightweight response into a full Headers object: about 5% of the bridge's
    // CPU per relayed call, measured old against new with calls alternating.
    const outgoing = c.env?.outgoing
    if (outgoing) {
      forEachStandardHeader(requestId, corsOrigin, (name, value) => outgoing.setHeader(name, value))
    }
    if (preflight) {
      // A CORS preflight, answered only for the configured origins.
      c.res = corsAllowed(origin)
        ? new Response(null, {
            status: 204,
            headers: {
              'access-control-allow-origin': origin,
              'access-control-allow-methods': CORS_ALLOW_METHODS,
              'access-control-allow-headers': CORS_ALLOW_HEADERS,
              'access-control-max-age': '600',
              vary: 'origin',
            },
          })
        : jsonError(403, ErrorCode.InvalidRequest, 'Forbidden: this origin is not allowed')
    } else {
      await next()
    }
    if (outgoing) return
    // Elsewhere (`app.request()`, other runtimes): the same rule on the response itself.
    const addStandard = (headers: Headers) =>
      forEachStandardHeader(requestId, corsOrigin, (name, value) => {
        if (!headers.has(name)) headers.set(name, value)
      })
    try {
      addStandard(c.res.headers)
    } catch {
      // Immutable headers (a response from fetch): copy it.
      c.res = new Response(c.res.body, c.res)
      addStandard(c.res.headers)
    }
  })
  app.get('/healthz', () => new Response('ok'))
  app.get('/readyz', () =>
    options.isReady() ? new Response('ready') : new Response('draining', { status: 503 })
  )
  app.get(
    '/metrics',
    async () =>
      new Response(await options.metrics(), { headers: { 'content-type': PROMETHEUS_TEXT } })
  )
  if (options.protectedResources) app.route('/', options.protectedResources)
  app.all('/mcp', (c) =>
    options.defaultServer
      ? options.mcp.handle(c.req.raw, options.defaultServer, '/mcp', c.get('requestId'))
      : jsonError(404, ErrorCode.InvalidRequest, 'No default MCP server: use /<server>/mcp')
  )
  app.all('/:server/mcp', (c) => {
    const server = c.req.param('server')
    return options.mcp.handle(c.req.raw, server, `/${server}/mcp`, c.get('requestId'))
  })
  app.notFound(() => jsonError(404, ErrorCode.InvalidRequest, 'Not Found'))
  app.onError(() => jsonError(500, ErrorCode.InternalError, 'Internal error'))
  return app as unknown as Hono
}
