/**
 * @module test/scale/replicas
 *
 * Horizontal scale without stickiness (issue #4): three `ferry serve` processes sharing one
 * catalog and one keyring behind a round-robin proxy that sends every request to the next
 * replica. One MCP SDK client session works across all of them — its consecutive requests land
 * on different replicas and all succeed — its standalone GET stream, held by one replica, gets a
 * notification the server sends while nothing is in flight, and a DELETE through any replica
 * ends the session on every replica.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js'
import { nextValue, post, postHeaders, textOf } from '../helpers/mcp.ts'
import { type ReplicaSet, fixtureServers, startReplicaSet } from '../helpers/replicas.ts'

let set: ReplicaSet
const clients: Client[] = []

beforeAll(async () => {
  set = await startReplicaSet({ replicas: 3 })
})
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close().catch(() => undefined)))
})
afterAll(async () => {
  if (!set) return
  expect(await set.close(), 'processes left behind').toEqual([])
})

const connect = async (setup?: (client: Client) => void) => {
  const transport = new StreamableHTTPClientTransport(new URL(set.url()), {
    reconnectionOptions: {
      maxRetries: 3,
      initialReconnectionDelay: 100,
      maxReconnectionDelay: 200,
      reconnectionDelayGrowFactor: 1,
    },
  })
  const client = new Client({ name: 'ferry-scale', version: '1.0.0' }, { capabilities: {} })
  setup?.(client)
  clients.push(client)
  await client.connect(transport)
  return { client, transport, sessionId: transport.sessionId! }
}

/** Waits until `check` holds (bounded). */
const waitFor = async (what: string, check: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

describe('one session across three replicas behind a round-robin proxy', () => {
  it("sends a session's consecutive requests to different replicas, and they all succeed", async () => {
    const { client, sessionId } = await connect()
    const first = set.proxy.log.length
    for (let i = 0; i < 12; i++) {
      const result = await client.callTool({ name: 'ferry_echo', arguments: { text: `call ${i}` } })
      expect(textOf(result)).toBe(`call ${i}`)
    }
    const posts = set.proxy
      .sessionLog(sessionId)
      .filter((entry) => entry.method === 'POST' && entry.seq >= first)
    expect(posts).toHaveLength(12)
    expect(posts.every((entry) => entry.status === 200 && entry.error === undefined)).toBe(true)
    // No stickiness: every replica served the session, never twice in a row.
    expect(new Set(posts.map((entry) => entry.upstream))).toEqual(new Set([0, 1, 2]))
    posts.slice(1).forEach((entry, i) => {
      expect(entry.upstream, `request ${i + 1} went where request ${i} did`).not.toBe(
        posts[i]!.upstream
      )
    })
    // Each replica dialled the sidecar on its own: the session's state is not in any of them.
    expect(set.replicas.every((replica) => replica.running)).toBe(true)
  })

  it('delivers a notification on the standalone GET stream that one replica holds', async () => {
    let deliver: ((value: number) => void) | undefined
    let notifications = 0
    const { client, sessionId } = await connect((c) =>
      c.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        notifications++
        deliver?.(notifications)
      })
    )
    // The SDK opens the standalone stream after `notifications/initialized` is accepted.
    await waitFor('the standalone GET stream', () =>
      set.proxy
        .sessionLog(sessionId)
        .some((entry) => entry.method === 'GET' && entry.status === 200 && !entry.lastEventId)
    )
    const gets = set.proxy
      .sessionLog(sessionId)
      .filter((entry) => entry.method === 'GET' && !entry.lastEventId)
    expect(gets).toHaveLength(1)
    const holder = gets[0]!.upstream
    expect(holder).toBeGreaterThanOrEqual(0)

    // Send until the POST lands on another replica than the one holding the stream (≤ 3 tries).
    let elsewhere = false
    for (let attempt = 1; attempt <= 3 && !elsewhere; attempt++) {
      const before = set.proxy.log.length
      const delivered = nextValue<number>(
        (d) => (deliver = d),
        10_000,
        `tools/list_changed #${attempt}`
      )
      const result = await client.callTool({
        name: 'ferry_notify_later',
        arguments: { delayMs: 200 },
      })
      expect(textOf(result)).toBe('scheduled')
      expect(await delivered).toBe(attempt)
      const call = set.proxy.log
        .slice(before)
        .find((entry) => entry.sessionId === sessionId && entry.method === 'POST')!
      elsewhere = call.upstream !== holder
    }
    expect(elsewhere, 'no notify call landed away from the stream holder').toBe(true)
    // Still the one stream: it was never broken or reopened.
    expect(
      set.proxy
        .sessionLog(sessionId)
        .filter((entry) => entry.method === 'GET' && !entry.lastEventId)
    ).toHaveLength(1)
  })

  it('ends the session on every replica after a DELETE through any one', async () => {
    const { client, transport, sessionId } = await connect()
    expect(textOf(await client.callTool({ name: 'ferry_echo', arguments: { text: 'x' } }))).toBe(
      'x'
    )
    const protocolVersion = transport.protocolVersion!
    const serversBefore = fixtureServers(set.processes()).length
    const before = set.proxy.log.length
    await transport.terminateSession()
    const deletion = set.proxy.log
      .slice(before)
      .find((entry) => entry.method === 'DELETE' && entry.sessionId === sessionId)!
    expect(deletion.status).toBe(200)

    const headers = postHeaders(sessionId, { 'mcp-protocol-version': protocolVersion })
    const call = { jsonrpc: '2.0', id: 77, method: 'tools/list', params: {} }
    for (const replica of set.replicas) {
      const response = await post(replica.url(), call, headers)
      expect(response.status, `replica ${replica.index} (POST)`).toBe(404)
      await response.body?.cancel()
      const get = await fetch(replica.url(), {
        headers: {
          accept: 'text/event-stream',
          'mcp-session-id': sessionId,
          'mcp-protocol-version': protocolVersion,
        },
      })
      expect(get.status, `replica ${replica.index} (GET)`).toBe(404)
      await get.body?.cancel()
    }
    // Through the proxy too, whichever replica it picks.
    for (let i = 0; i < 3; i++) {
      const response = await post(set.url(), call, headers)
      expect(response.status).toBe(404)
      await response.body?.cancel()
    }
    // The session's server went away.
    await waitFor(
      'the server to exit',
      () => fixtureServers(set.processes()).length === serversBefore - 1
    )
  })
})
