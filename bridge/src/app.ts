/**
 * @module
 * The bridge's HTTP surface as a Hono app: the MCP endpoints (`/<server>/mcp`, and
 * `/mcp` for the default server), `/healthz`, `/readyz` and `/metrics` (Prometheus).
 * Built from plain dependencies so tests drive it with `app.request()` and no socket.
 */
import { Hono } from 'hono'
import { ErrorCode, errorResponse } from '@ferry/shared'
import type { StreamableHTTPHandler } from './transport/streamable-http.ts'

export interface AppOptions {
  mcp: StreamableHTTPHandler
  /** Server served at `/mcp`; without one, `/mcp` answers 404. */
  defaultServer?: string
  /** False while the replica drains: `/readyz` then fails so load balancers move on. */
  isReady: () => boolean
  /** The metrics in the Prometheus text format. */
  metrics: () => Promise<string>
}

/** Content type of the Prometheus text exposition format. */
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8'

const jsonError = (status: number, code: number, message: string) =>
  new Response(JSON.stringify(errorResponse(null, code, message)), {
    status,
    headers: { 'content-type': 'application/json' },
  })

export const createApp = (options: AppOptions): Hono => {
  const app = new Hono()
  app.get('/healthz', () => new Response('ok'))
  app.get('/readyz', () =>
    options.isReady() ? new Response('ready') : new Response('draining', { status: 503 })
  )
  app.get(
    '/metrics',
    async () =>
      new Response(await options.metrics(), { headers: { 'content-type': PROMETHEUS_TEXT } })
  )
  app.all('/mcp', (c) =>
    options.defaultServer
      ? options.mcp.handle(c.req.raw, options.defaultServer)
      : jsonError(404, ErrorCode.InvalidRequest, 'No default MCP server: use /<server>/mcp')
  )
  app.all('/:server/mcp', (c) => options.mcp.handle(c.req.raw, c.req.param('server')))
  app.notFound(() => jsonError(404, ErrorCode.InvalidRequest, 'Not Found'))
  app.onError(() => jsonError(500, ErrorCode.InternalError, 'Internal error'))
  return app
}
