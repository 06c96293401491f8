/**
 * A minimal MCP Streamable HTTP client for benchmarks: `node:http` with a
 * keep-alive agent, no SDK, so the client costs as little as possible. Handles
 * both JSON and SSE answers.
 */
import { Agent, request } from 'node:http'

export const BENCH_PROTOCOL_VERSION = '2025-06-18'

export interface HttpAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

export const createAgent = (maxSockets: number) => new Agent({ keepAlive: true, maxSockets })

export const post = (
  agent: Agent,
  url: URL,
  body: string,
  headers: Record<string, string>
): Promise<HttpAnswer> =>
  new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': Buffer.byteLength(body),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          })
        )
        res.on('error', reject)
      }
    )
    req.on('error', reject)
    req.end(body)
  })

/** The JSON-RPC response with `id` in a JSON or SSE body. */
export const responseIn = (
  answer: HttpAnswer,
  id: number
): { result?: unknown; error?: unknown } => {
  const type = String(answer.headers['content-type'] ?? '')
  if (type.includes('application/json')) return JSON.parse(answer.body) as { result?: unknown }
  for (const line of answer.body.split('\n')) {
    if (!line.startsWith('data: ') || line.length < 8) continue
    const message = JSON.parse(line.slice(6)) as { id?: number; result?: unknown; error?: unknown }
    if (message.id === id && ('result' in message || 'error' in message)) return message
  }
  throw new Error(`no response to ${id} in: ${answer.body.slice(0, 200)}`)
}

/** One MCP session over HTTP. */
export class McpHttpSession {
  readonly url: URL
  private readonly agent: Agent
  private sessionId: string | undefined
  private nextId = 1

  constructor(url: string, agent: Agent) {
    this.url = new URL(url)
    this.agent = agent
  }

  private headers(): Record<string, string> {
    return this.sessionId
      ? { 'mcp-session-id': this.sessionId, 'mcp-protocol-version': BENCH_PROTOCOL_VERSION }
      : {}
  }

  async call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++
    const answer = await post(
      this.agent,
      this.url,
      JSON.stringify({ jsonrpc: '2.0', id, method, params }),
      this.headers()
    )
    if (answer.status !== 200)
      throw new Error(`${method}: HTTP ${answer.status} ${answer.body.slice(0, 200)}`)
    const message = responseIn(answer, id)
    if (message.error) throw new Error(`${method}: ${JSON.stringify(message.error)}`)
    return message.result
  }

  /** initialize + notifications/initialized. */
  async open(): Promise<void> {
    const id = this.nextId++
    const answer = await post(
      this.agent,
      this.url,
      JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'initialize',
        params: {
          protocolVersion: BENCH_PROTOCOL_VERSION,
          capabilities: {},
          clientInfo: { name: 'ferry-bench', version: '1.0.0' },
        },
      }),
      {}
    )
    if (answer.status !== 200)
      throw new Error(`initialize: HTTP ${answer.status} ${answer.body.slice(0, 300)}`)
    responseIn(answer, id)
    const sessionId = answer.headers['mcp-session-id']
    if (typeof sessionId !== 'string') throw new Error('initialize: no session id')
    this.sessionId = sessionId
    const note = await post(
      this.agent,
      this.url,
      JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      this.headers()
    )
    if (note.status !== 202) throw new Error(`notifications/initialized: HTTP ${note.status}`)
  }

  echo(message: string): Promise<unknown> {
    return this.call('tools/call', { name: 'echo', arguments: { message } })
  }

  async close(): Promise<void> {
    if (!this.sessionId) return
    await new Promise<void>((resolve) => {
      const req = request(
        this.url,
        { method: 'DELETE', agent: this.agent, headers: this.headers() },
        (res) => {
          res.resume()
          res.on('end', () => resolve())
        }
      )
      req.on('error', () => resolve())
      req.end()
    })
    this.sessionId = undefined
  }
}
