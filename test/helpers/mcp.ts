/**
 * @module test/helpers/mcp
 *
 * MCP over raw HTTP for tests that need to see status codes, headers and SSE events exactly:
 * request builders, an SSE parser and a session opener, plus an SDK client factory that closes
 * every client it made.
 */
import { request as httpRequestRaw } from 'node:http'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js'

export const PROTOCOL_VERSION = '2025-11-25'
export const BOTH = 'application/json, text/event-stream'

export interface JsonRpcMessage {
  jsonrpc: '2.0'
  id?: string | number | null
  method?: string
  params?: Record<string, unknown>
  result?: Record<string, unknown>
  error?: { code: number; message: string; data?: unknown }
}

/** Headers of a well-formed POST, with a session id when given. */
export const postHeaders = (
  sessionId?: string,
  extra: Record<string, string> = {}
): Record<string, string> => ({
  'content-type': 'application/json',
  accept: BOTH,
  'mcp-protocol-version': PROTOCOL_VERSION,
  ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
  ...extra,
})

export const initializeRequest = (protocolVersion = PROTOCOL_VERSION, id: number | string = 0) => ({
  jsonrpc: '2.0' as const,
  id,
  method: 'initialize',
  params: {
    protocolVersion,
    capabilities: {},
    clientInfo: { name: 'ferry-e2e', version: '1.0.0' },
  },
})

/** POSTs one message (or any body, when `body` is a string). */
export const post = (
  url: string,
  body: unknown,
  headers: Record<string, string>,
  signal?: AbortSignal
): Promise<Response> =>
  fetch(url, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  })

export interface SseEvent {
  id?: string
  event?: string
  data: string
  retry?: number
}

/** Parses an SSE body event by event (comments skipped); ends when the body does. */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder()
  let buffer = ''
  let current: SseEvent = { data: '' }
  let hasData = false
  let hasField = false
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true })
    let newline: number
    while ((newline = buffer.search(/\r\n|\n|\r/)) !== -1) {
      const line = buffer.slice(0, newline)
      buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1))
      if (line === '') {
        if (hasField) yield current
        current = { data: '' }
        hasData = false
        hasField = false
        continue
      }
      if (line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      let value = colon === -1 ? '' : line.slice(colon + 1)
      if (value.startsWith(' ')) value = value.slice(1)
      hasField = true
      if (field === 'data') {
        current.data = hasData ? `${current.data}\n${value}` : value
        hasData = true
      } else if (field === 'id') current.id = value
      else if (field === 'event') current.event = value
      else if (field === 'retry') current.retry = Number(value)
    }
  }
}

/** The JSON-RPC messages of a response, whether it is JSON or an SSE stream. */
export const messagesOf = async (response: Response): Promise<JsonRpcMessage[]> => {
  const type = response.headers.get('content-type') ?? ''
  if (type.startsWith('text/event-stream')) {
    const messages: JsonRpcMessage[] = []
    for await (const event of sseEvents(response.body!)) {
      if (event.data) messages.push(JSON.parse(event.data) as JsonRpcMessage)
    }
    return messages
  }
  const text = await response.text()
  return text ? [JSON.parse(text) as JsonRpcMessage] : []
}

/** The one response (a message with an id and a result or error) among a response's messages. */
export const responseOf = async (response: Response): Promise<JsonRpcMessage> => {
  const messages = await messagesOf(response)
  const found = messages.find((m) => m.method === undefined && ('result' in m || 'error' in m))
  if (!found) throw new Error(`no JSON-RPC response in ${JSON.stringify(messages)}`)
  return found
}

export interface RawSession {
  sessionId: string
  url: string
  protocolVersion: string
  /** POST headers for this session. */
  headers(extra?: Record<string, string>): Record<string, string>
  /** POSTs a message on this session. */
  post(body: unknown, extra?: Record<string, string>, signal?: AbortSignal): Promise<Response>
  /** Sends a request with a fresh id and returns its response. */
  request(method: string, params?: Record<string, unknown>): Promise<JsonRpcMessage>
  /** Ends the session (DELETE). */
  close(): Promise<Response>
}

let nextId = 1000

/** Initializes a session over raw HTTP (initialize + notifications/initialized). */
export const openRawSession = async (
  url: string,
  protocolVersion = PROTOCOL_VERSION
): Promise<RawSession> => {
  const response = await post(url, initializeRequest(protocolVersion), postHeaders())
  const sessionId = response.headers.get('mcp-session-id')
  const init = await responseOf(response)
  if (!sessionId || !init.result) {
    throw new Error(`initialize failed (${response.status}): ${JSON.stringify(init)}`)
  }
  const negotiated = init.result.protocolVersion as string
  const headers = (extra: Record<string, string> = {}) =>
    postHeaders(sessionId, { 'mcp-protocol-version': negotiated, ...extra })
  const session: RawSession = {
    sessionId,
    url,
    protocolVersion: negotiated,
    headers,
    post: (body, extra, signal) => post(url, body, headers(extra), signal),
    request: async (method, params) =>
      responseOf(
        await session.post({ jsonrpc: '2.0', id: nextId++, method, params: params ?? {} })
      ),
    close: () => fetch(url, { method: 'DELETE', headers: headers() }),
  }
  const initialized = await session.post({ jsonrpc: '2.0', method: 'notifications/initialized' })
  if (initialized.status !== 202) throw new Error(`initialized answered ${initialized.status}`)
  return session
}

export interface SdkClient {
  client: Client
  transport: StreamableHTTPClientTransport
}

/** Makes SDK clients and closes them all at the end. */
export class SdkClients {
  private readonly all: SdkClient[] = []

  async connect(
    url: string,
    options: {
      capabilities?: ClientCapabilities
      setup?: (client: Client) => void
      headers?: Record<string, string>
    } = {}
  ): Promise<SdkClient> {
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      reconnectionOptions: {
        maxRetries: 0,
        initialReconnectionDelay: 100,
        maxReconnectionDelay: 100,
        reconnectionDelayGrowFactor: 1,
      },
      ...(options.headers ? { requestInit: { headers: options.headers } } : {}),
    })
    const client = new Client(
      { name: 'ferry-e2e', version: '1.0.0' },
      { capabilities: options.capabilities ?? {} }
    )
    options.setup?.(client)
    const made = { client, transport }
    this.all.push(made)
    await client.connect(transport)
    return made
  }

  async closeAll(): Promise<void> {
    const all = this.all.splice(0)
    await Promise.all(all.map(({ client }) => client.close().catch(() => undefined)))
  }
}

/** Resolves with the first value `register` reports, or rejects after `timeoutMs`. */
export const nextValue = <T>(
  register: (deliver: (value: T) => void) => void,
  timeoutMs: number,
  what: string
): Promise<T> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs)
    register((value) => {
      clearTimeout(timer)
      resolve(value)
    })
  })

/** The text of the first content item of a tool result. */
export const textOf = (result: unknown): string => {
  const content = (result as { content?: { type: string; text?: string }[] }).content
  const first = content?.[0]
  if (!first || first.type !== 'text' || first.text === undefined) {
    throw new Error(`not a text result: ${JSON.stringify(result)}`)
  }
  return first.text
}

export interface RawHttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/**
 * One HTTP request through `node:http`, for headers `fetch` will not send as given (`Host`).
 * Reads the whole body, so use it only for answers that end.
 */
export const httpRequest = (options: {
  port: number
  path: string
  method: string
  headers: Record<string, string>
  body?: string
}): Promise<RawHttpResponse> =>
  new Promise((resolve, reject) => {
    const request = httpRequestRaw(
      {
        host: '127.0.0.1',
        port: options.port,
        path: options.path,
        method: options.method,
        headers: options.headers,
      },
      (response) => {
        let body = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => (body += chunk))
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body })
        )
        response.on('error', reject)
      }
    )
    request.on('error', reject)
    request.end(options.body)
  })
