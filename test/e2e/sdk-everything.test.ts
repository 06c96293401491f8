/**
 * @module test/e2e/sdk-everything
 *
 * The MCP SDK 1.32.2 client, over real HTTP, against `@modelcontextprotocol/server-everything`
 * behind the bridge: at `/everything/mcp` and at `/mcp` (the default server).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startBridge, type TestBridge } from '../helpers/bridge.ts'
import { PROTOCOL_VERSION, SdkClients, postHeaders, post, textOf } from '../helpers/mcp.ts'

let bridge: TestBridge
const clients = new SdkClients()

beforeAll(async () => {
  bridge = await startBridge()
})
afterEach(() => clients.closeAll())
afterAll(() => bridge?.close())

describe.each([
  ['/everything/mcp', 'everything'],
  ['/mcp', undefined],
])('SDK client against server-everything at %s', (_path, server) => {
  it('connects and negotiates a session', async () => {
    const { client, transport } = await clients.connect(bridge.url(server))
    expect(transport.sessionId).toMatch(/^[\x21-\x7e]+$/)
    expect(transport.protocolVersion).toBe(PROTOCOL_VERSION)
    expect(client.getServerVersion()?.name).toMatch(/everything/i)
  })

  it('lists tools and calls echo', async () => {
    const { client } = await clients.connect(bridge.url(server))
    const { tools } = await client.listTools()
    expect(tools.map((tool) => tool.name)).toContain('echo')
    const result = await client.callTool({ name: 'echo', arguments: { message: 'hello ferry' } })
    expect(textOf(result)).toBe('Echo: hello ferry')
  })

  it('reads a resource', async () => {
    const { client } = await clients.connect(bridge.url(server))
    const uri = 'demo://resource/dynamic/text/1'
    const { contents } = await client.readResource({ uri })
    expect(contents).toHaveLength(1)
    expect(contents[0]).toMatchObject({ uri, mimeType: 'text/plain' })
    expect((contents[0] as { text: string }).text).toMatch(/^Resource 1: /)
  })

  it('gets a prompt', async () => {
    const { client } = await clients.connect(bridge.url(server))
    const { prompts } = await client.listPrompts()
    expect(prompts.map((prompt) => prompt.name)).toContain('simple-prompt')
    const prompt = await client.getPrompt({ name: 'simple-prompt' })
    expect(prompt.messages[0]?.content).toEqual({
      type: 'text',
      text: 'This is a simple prompt without arguments.',
    })
  })

  it('terminates the session; the old session id then answers 404', async () => {
    const { client, transport } = await clients.connect(bridge.url(server))
    await client.ping()
    const sessionId = transport.sessionId!
    await transport.terminateSession()
    expect(transport.sessionId).toBeUndefined()
    const response = await post(
      bridge.url(server),
      { jsonrpc: '2.0', id: 99, method: 'tools/list', params: {} },
      postHeaders(sessionId)
    )
    expect(response.status).toBe(404)
    const body = (await response.json()) as { id: unknown; error: { code: number } }
    expect(body.id).toBeNull()
    expect(body.error.code).toBeTypeOf('number')
  })
})
