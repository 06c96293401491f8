/**
 * Benchmark-only bridge process for the scale test: the real bridge (`serveBridge`)
 * with a runtime that asks the session host (scale-host.ts) for sessions instead of
 * starting processes. A control listener reports memory after a full GC.
 */
import { createServer } from 'node:http'
import { Keyring, serveBridge, type SessionRuntime } from '@ferry/bridge'
import { CatalogSchema, silentLogger } from '@ferry/shared'

const hostPort = Number(process.env.SCALE_HOST_PORT)
let active = 0
const runtime: SessionRuntime = {
  kind: 'local',
  start: async (spec) => {
    const url = `http://127.0.0.1:${hostPort}/start?session=${spec.sessionName}&secret=${encodeURIComponent(spec.secret)}`
    const res = await fetch(url, { method: 'POST' })
    if (!res.ok) throw new Error(`host refused: ${res.status}`)
    active++
    return { address: `ws://127.0.0.1:${hostPort}` }
  },
  stop: async () => undefined,
  activeSessions: () => active,
  close: async () => undefined,
}

const catalog = CatalogSchema.parse({
  bridge: {
    host: '127.0.0.1',
    port: 0,
    logLevel: 'silent',
    maxSessions: 0,
    connection: { idleClose: '1h' },
  },
  defaultServer: 'echo',
  servers: { echo: { runtime: 'local', command: 'in-process' } },
})
const running = await serveBridge({
  catalog,
  keyring: await Keyring.generate(),
  logger: silentLogger,
  runtimes: { local: runtime },
})
const control = createServer((_req, res) => {
  ;(globalThis as { gc?: () => void }).gc?.()
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ ...process.memoryUsage(), connections: running.bridge.pool.size }))
})
control.listen(0, '127.0.0.1', () => {
  process.stdout.write(
    `${JSON.stringify({ port: running.port, control: (control.address() as { port: number }).port })}\n`
  )
})
