/**
 * @module test/e2e/restart
 *
 * The bridge holds no session state: a session survives a bridge restart when the new bridge
 * loads the same keyring file (`FERRY_SESSION_KEYS`), on the same port or another one, and a
 * bridge with a different keyring answers 404 for it. The bridges run as real `ferry serve`
 * processes; their sidecars outlive them by design, so the test kills those itself at the end.
 */
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js'
import {
  type BridgeProcess,
  fixturePath,
  killSidecars,
  runFerry,
  startBridgeProcess,
  tempDir,
  writeCatalog,
} from '../helpers/bridge.ts'
import { isAlive } from '../helpers/processes.ts'
import { post, postHeaders, textOf } from '../helpers/mcp.ts'

let dir: string
let catalogFile: string
let keysFile: string
let otherKeysFile: string
const bridges: BridgeProcess[] = []
const sidecars = new Set<number>()
const clients: Client[] = []

const start = async (keys: string, port?: number) => {
  const bridge = await startBridgeProcess({
    catalogFile,
    keysFile: keys,
    ...(port ? { port } : {}),
  })
  bridges.push(bridge)
  return bridge
}

/** Stops a bridge process (SIGTERM), remembering the sidecars it started. */
const stop = async (bridge: BridgeProcess) => {
  for (const pid of bridge.sidecarPids()) sidecars.add(pid)
  await bridge.stop('SIGTERM')
  expect(await bridge.exited).toEqual({ code: 0, signal: null })
}

const transportFor = (url: string, sessionId?: string) =>
  new StreamableHTTPClientTransport(new URL(url), {
    reconnectionOptions: {
      maxRetries: 0,
      initialReconnectionDelay: 100,
      maxReconnectionDelay: 100,
      reconnectionDelayGrowFactor: 1,
    },
    ...(sessionId ? { sessionId } : {}),
  })

/** A client that counts the logging notifications it receives. */
const newClient = () => {
  const client = new Client({ name: 'ferry-e2e-restart', version: '1.0.0' }, { capabilities: {} })
  const logs: unknown[] = []
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    logs.push(n.params.data)
  })
  clients.push(client)
  return { client, logs }
}

beforeAll(async () => {
  dir = tempDir('ferry-e2e-restart-')
  catalogFile = writeCatalog(dir, {
    bridge: { host: '127.0.0.1', port: 0, logLevel: 'info', shutdownGrace: '300ms' },
    servers: {
      fixture: {
        runtime: 'local',
        command: process.execPath,
        args: [fixturePath],
        idleTimeout: '2m',
      },
    },
  })
  keysFile = join(dir, 'keys.json')
  otherKeysFile = join(dir, 'other-keys.json')
  for (const file of [keysFile, otherKeysFile]) {
    const created = await runFerry(['keys', 'new', file])
    expect(created.code, created.stderr).toBe(0)
  }
})

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close().catch(() => undefined)))
  for (const bridge of bridges.splice(0)) {
    for (const pid of bridge.sidecarPids()) sidecars.add(pid)
    await bridge.stop('SIGKILL')
  }
})

afterAll(async () => {
  await killSidecars(sidecars)
})

describe('a session across bridge restarts', () => {
  it('keeps working when the bridge restarts on the same port with the same keyring', async () => {
    const first = await start(keysFile)
    const { client, logs } = newClient()
    const transport = transportFor(first.url('fixture'))
    await client.connect(transport)
    expect(textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'one' } }))).toBe(
      'one'
    )
    // Server state that must survive: the logging level set on this session.
    await client.callTool({ name: 'test_tool_with_logging', arguments: {} })
    expect(logs).toHaveLength(3)
    await client.setLoggingLevel('error')
    const sessionId = transport.sessionId!
    const [sidecar] = first.sidecarPids()
    expect(sidecar).toBeDefined()

    await stop(first)
    // The sidecar outlives the bridge.
    expect(isAlive(sidecar!)).toBe(true)

    const second = await start(keysFile, first.port)
    expect(second.port).toBe(first.port)
    // The same client and transport carry on, unaware of the restart.
    expect(textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'two' } }))).toBe(
      'two'
    )
    expect(transport.sessionId).toBe(sessionId)
    await client.callTool({ name: 'test_tool_with_logging', arguments: {} })
    expect(logs).toHaveLength(3)
    // No new sidecar was started for it.
    expect(second.sidecarPids()).toEqual([])
  })

  it('keeps working on a new port with a transport given the session id, and not under another keyring', async () => {
    const first = await start(keysFile)
    const { client, logs } = newClient()
    const transport = transportFor(first.url('fixture'))
    await client.connect(transport)
    await client.setLoggingLevel('error')
    const sessionId = transport.sessionId!
    const protocolVersion = transport.protocolVersion!
    const meta = await client.callTool({ name: 'ferry_meta', arguments: {} })
    expect(JSON.parse(textOf(meta))).toBeTypeOf('object')

    await stop(first)
    // Detach the client from the old transport (no DELETE: the session must stay).
    await client.close()

    const second = await start(keysFile)
    expect(second.port).not.toBe(first.port)
    const resumed = transportFor(second.url('fixture'), sessionId)
    // Same client: its request ids carry on, as MCP requires within a session.
    await client.connect(resumed)
    resumed.setProtocolVersion(protocolVersion)
    expect(resumed.sessionId).toBe(sessionId)
    expect(
      textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'resumed' } }))
    ).toBe('resumed')
    await client.callTool({ name: 'test_tool_with_logging', arguments: {} })
    expect(logs).toEqual([])
    expect(second.sidecarPids()).toEqual([])

    await stop(second)
    const foreign = await start(otherKeysFile)
    const response = await post(
      foreign.url('fixture'),
      { jsonrpc: '2.0', id: 1000, method: 'tools/list', params: {} },
      postHeaders(sessionId, { 'mcp-protocol-version': protocolVersion })
    )
    expect(response.status).toBe(404)
    await response.body?.cancel()
  })
})
