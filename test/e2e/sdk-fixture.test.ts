/**
 * @module test/e2e/sdk-fixture
 *
 * The MCP SDK 1.32.2 client, over real HTTP, against the conformance fixture behind the bridge:
 * what the sidecar routes from the server to the client (progress, logging, sampling and
 * elicitation requests, unsolicited notifications), concurrency on one session, `_meta`
 * pass-through, and the server's environment.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js'
import type { Progress } from '@modelcontextprotocol/sdk/types.js'
import { startBridge, type TestBridge } from '../helpers/bridge.ts'
import { SdkClients, nextValue, textOf } from '../helpers/mcp.ts'

let bridge: TestBridge
const clients = new SdkClients()

beforeAll(async () => {
  bridge = await startBridge()
})
afterEach(() => clients.closeAll())
afterAll(() => bridge?.close())

const fixture = () => bridge.url('fixture')

describe('SDK client against the fixture', () => {
  it('delivers progress notifications in order, then the result', async () => {
    const { client } = await clients.connect(fixture())
    const seen: Progress[] = []
    const result = await client.callTool(
      { name: 'test_tool_with_progress', arguments: {} },
      undefined,
      { onprogress: (progress) => seen.push(progress) }
    )
    expect(seen.map((p) => p.progress)).toEqual([0, 50, 100])
    expect(seen.every((p) => p.total === 100)).toBe(true)
    expect(textOf(result)).toBe('Tool with progress executed successfully')
  })

  it('delivers many progress notifications in order', async () => {
    const { client } = await clients.connect(fixture())
    const seen: number[] = []
    const result = await client.callTool(
      { name: 'ferry_progress', arguments: { count: 25, intervalMs: 5 } },
      undefined,
      { onprogress: (progress) => seen.push(progress.progress) }
    )
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => i + 1))
    expect(textOf(result)).toBe('done 25')
  })

  it('delivers logging notifications sent while a tool runs', async () => {
    const messages: unknown[] = []
    const { client } = await clients.connect(fixture(), {
      setup: (c) =>
        c.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
          messages.push(n.params.data)
        }),
    })
    const result = await client.callTool({ name: 'test_tool_with_logging', arguments: {} })
    expect(textOf(result)).toBe('Tool with logging executed successfully')
    expect(messages).toEqual([
      'Tool execution started',
      'Tool processing data',
      'Tool execution completed',
    ])
  })

  it('round-trips a sampling request to the client', async () => {
    const prompts: unknown[] = []
    const { client } = await clients.connect(fixture(), {
      capabilities: { sampling: {} },
      setup: (c) =>
        c.setRequestHandler(CreateMessageRequestSchema, async (request) => {
          prompts.push(request.params.messages[0]?.content)
          return {
            model: 'test-model',
            role: 'assistant',
            content: { type: 'text', text: 'sampled answer' },
          }
        }),
    })
    const result = await client.callTool({
      name: 'test_sampling',
      arguments: { prompt: 'What is Ferry?' },
    })
    expect(prompts).toEqual([{ type: 'text', text: 'What is Ferry?' }])
    expect(textOf(result)).toBe('LLM response: sampled answer')
  })

  it('round-trips an elicitation request to the client', async () => {
    const asked: string[] = []
    const { client } = await clients.connect(fixture(), {
      capabilities: { elicitation: {} },
      setup: (c) =>
        c.setRequestHandler(ElicitRequestSchema, async (request) => {
          asked.push((request.params as { message: string }).message)
          return { action: 'accept', content: { username: 'ada', email: 'ada@example.com' } }
        }),
    })
    const result = await client.callTool({
      name: 'test_elicitation',
      arguments: { message: 'Who are you?' },
    })
    expect(asked).toEqual(['Who are you?'])
    expect(textOf(result)).toBe(
      'User response: action=accept, content={"username":"ada","email":"ada@example.com"}'
    )
  })

  it('delivers a notification sent with no request in flight on the standalone GET stream', async () => {
    let deliver: ((value: true) => void) | undefined
    const { client } = await clients.connect(fixture(), {
      setup: (c) =>
        c.setNotificationHandler(ToolListChangedNotificationSchema, () => {
          deliver?.(true)
        }),
    })
    const changed = nextValue<true>((d) => (deliver = d), 10_000, 'tools/list_changed')
    const result = await client.callTool({
      name: 'ferry_notify_later',
      arguments: { delayMs: 300 },
    })
    expect(textOf(result)).toBe('scheduled')
    await expect(changed).resolves.toBe(true)
  })

  it('answers many concurrent calls on one session, each with its own result', async () => {
    const { client } = await clients.connect(fixture())
    const calls = Array.from({ length: 40 }, (_, i) =>
      i % 4 === 0
        ? client.callTool({ name: 'ferry_sleep', arguments: { ms: (i * 7) % 60 } })
        : client.callTool({ name: 'ferry_echo', arguments: { text: `message ${i}` } })
    )
    const results = await Promise.all(calls)
    results.forEach((result, i) => {
      expect(textOf(result)).toBe(i % 4 === 0 ? `slept ${(i * 7) % 60}` : `message ${i}`)
    })
  })

  it('passes _meta.traceparent through to the server', async () => {
    const { client } = await clients.connect(fixture())
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
    const traceparent = `00-${traceId}-00f067aa0ba902b7-01`
    const result = await client.callTool({
      name: 'ferry_meta',
      arguments: {},
      _meta: { traceparent, 'example.com/custom': 'kept' },
    })
    const meta = JSON.parse(textOf(result)) as Record<string, unknown>
    // The sidecar may continue the trace with its own span id, but the trace must be the same.
    expect(meta.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-[0-9a-f]{2}$`))
    expect(meta['example.com/custom']).toBe('kept')
  })

  it("keeps Ferry's sidecar secret out of the server's environment", async () => {
    const { client } = await clients.connect(fixture())
    const names = JSON.parse(
      textOf(await client.callTool({ name: 'ferry_env', arguments: {} }))
    ) as string[]
    expect(Array.isArray(names)).toBe(true)
    // The server does inherit an environment (so the checks below are meaningful)...
    expect(names).toContain('PATH')
    // ...but not the per-session secret (nor its verifier) the sidecar was started with.
    expect(names).not.toContain('FERRY_SIDECAR_SECRET')
    expect(names.filter((name) => name.startsWith('FERRY_SIDECAR'))).toEqual([])
  })
})
