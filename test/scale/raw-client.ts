/**
 * @module test/scale/raw-client
 *
 * MCP calls over raw `fetch` for the scale and chaos tests, so that every SSE event and its id is
 * visible: a long call whose stream is resumed with `GET` + `Last-Event-ID` (on whatever replica
 * the proxy picks) each time its connection breaks or ends early, and short calls that a client
 * retries when the request failed in transport (never after an answer).
 */
import { parseEventId } from '@ferry/shared'
import { type JsonRpcMessage, type RawSession, responseOf, sseEvents } from '../helpers/mcp.ts'
import { UPSTREAM_HEADER } from '../helpers/replicas.ts'

/** The session is gone: the bridge answered 404. */
export class SessionLostError extends Error {
  override readonly name = 'SessionLostError'
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** One SSE event with data, as received. */
export interface ReceivedEvent {
  id: string
  /** Stream key and sequence number of `id`. */
  stream: string
  seq: number
  message: JsonRpcMessage
  /** `performance.now()` when it was parsed. */
  at: number
  /** Index of the connection (0 = the POST, then one per resume) that carried it. */
  connection: number
}

/** One HTTP response that carried part of the call's stream. */
export interface StreamConnection {
  kind: 'post' | 'resume'
  /** Upstream index the proxy reported (`x-ferry-upstream`), -1 when there was none. */
  upstream: number
  /** The `Last-Event-ID` sent (resumes). */
  lastEventId?: string
  openedAt: number
  firstEventAt?: number
  endedAt?: number
  /** `end`: the body ended cleanly; `error`: it broke off; `complete`: the response arrived. */
  ending?: 'end' | 'error' | 'complete'
  /** `retry:` values received on this connection, with `performance.now()` of each. */
  retries: { ms: number; at: number }[]
  /** Events (with or without data) received. */
  events: number
}

export interface StreamedCall {
  request: JsonRpcMessage
  /** The final JSON-RPC response. */
  response: JsonRpcMessage
  /** Every data event of the call's stream, in order of arrival, across connections. */
  events: ReceivedEvent[]
  connections: StreamConnection[]
  /** Failed attempts to resume (refused, 502 …) before one succeeded. */
  failedResumes: number
}

export interface StreamOptions {
  /** Called for every data event (e.g. to kill a replica part-way). */
  onEvent?: (event: ReceivedEvent, call: { connections: StreamConnection[] }) => void
  /** Delay before each resume attempt (default 0: at once). */
  resumeDelayMs?: number
  /** Give up after this long in total (default 60 s). */
  timeoutMs?: number
  /** Sends the request (default: `session.post`, i.e. through the session's URL). */
  send?: (request: JsonRpcMessage, signal: AbortSignal) => Promise<Response>
}

const upstreamOf = (response: Response) => Number(response.headers.get(UPSTREAM_HEADER) ?? -1)

const isFinal = (message: JsonRpcMessage) =>
  message.method === undefined && ('result' in message || 'error' in message)

/**
 * Sends `request` and follows its response to the end: JSON, or an SSE stream resumed with
 * `Last-Event-ID` through the session's URL (the proxy) every time a connection ends without the
 * response. Throws {@link SessionLostError} on a 404.
 */
export const streamCall = async (
  session: RawSession,
  request: JsonRpcMessage,
  options: StreamOptions = {}
): Promise<StreamedCall> => {
  const deadline = performance.now() + (options.timeoutMs ?? 60_000)
  const signal = AbortSignal.timeout(options.timeoutMs ?? 60_000)
  const events: ReceivedEvent[] = []
  const connections: StreamConnection[] = []
  let failedResumes = 0
  let lastEventId: string | undefined
  let response: Response = await (options.send
    ? options.send(request, signal)
    : session.post(request, {}, signal))
  connections.push({
    kind: 'post',
    upstream: upstreamOf(response),
    openedAt: performance.now(),
    retries: [],
    events: 0,
  })
  if (response.status === 404) throw new SessionLostError(`POST answered 404`)
  for (;;) {
    const connection = connections.at(-1)!
    const type = response.headers.get('content-type') ?? ''
    if (response.status === 200 && type.startsWith('application/json')) {
      const message = (await response.json()) as JsonRpcMessage
      connection.ending = 'complete'
      connection.endedAt = performance.now()
      return { request, response: message, events, connections, failedResumes }
    }
    if (response.status !== 200 || !type.startsWith('text/event-stream')) {
      throw new Error(`unexpected answer ${response.status} ${type}: ${await response.text()}`)
    }
    let final: JsonRpcMessage | undefined
    try {
      for await (const event of sseEvents(response.body!)) {
        connection.events++
        if (event.retry !== undefined)
          connection.retries.push({ ms: event.retry, at: performance.now() })
        if (event.id) lastEventId = event.id
        if (!event.data) continue
        const message = JSON.parse(event.data) as JsonRpcMessage
        const parsed = event.id ? parseEventId(event.id) : undefined
        const received: ReceivedEvent = {
          id: event.id ?? '',
          stream: parsed?.stream ?? '',
          seq: parsed?.seq ?? -1,
          message,
          at: performance.now(),
          connection: connections.length - 1,
        }
        connection.firstEventAt ??= received.at
        events.push(received)
        options.onEvent?.(received, { connections })
        if (isFinal(message) && message.id === request.id) {
          final = message
          break
        }
      }
      connection.ending = final ? 'complete' : 'end'
    } catch {
      connection.ending = 'error'
    }
    connection.endedAt = performance.now()
    if (final) {
      await response.body?.cancel().catch(() => undefined)
      return { request, response: final, events, connections, failedResumes }
    }
    if (!lastEventId) throw new Error('the stream broke before its priming event')
    // Resume on whichever replica the proxy picks; retry until one answers.
    for (;;) {
      if (performance.now() > deadline) throw new Error(`gave up resuming after ${lastEventId}`)
      if (options.resumeDelayMs) await sleep(options.resumeDelayMs)
      let resumed: Response
      try {
        resumed = await fetch(session.url, {
          method: 'GET',
          headers: {
            accept: 'text/event-stream',
            'mcp-session-id': session.sessionId,
            'mcp-protocol-version': session.protocolVersion,
            'last-event-id': lastEventId,
          },
          signal,
        })
      } catch {
        failedResumes++
        await sleep(20)
        continue
      }
      if (resumed.status === 404) throw new SessionLostError(`resume answered 404`)
      if (resumed.status !== 200) {
        failedResumes++
        await resumed.body?.cancel().catch(() => undefined)
        await sleep(20)
        continue
      }
      response = resumed
      connections.push({
        kind: 'resume',
        upstream: upstreamOf(resumed),
        lastEventId,
        openedAt: performance.now(),
        retries: [],
        events: 0,
      })
      break
    }
  }
}

/** What {@link checkProgressStream} found. */
export interface ProgressCheck {
  /** Progress values received, in order. */
  progress: number[]
  /** Values of 1..count never received. */
  missing: number[]
  /** Values received more than once. */
  duplicated: number[]
  /** Whether the values came strictly in order. */
  inOrder: boolean
  /** Whether the event sequence numbers are gapless and strictly increasing from 1. */
  seqsContiguous: boolean
  /** Responses to the call received (must be 1). */
  responses: number
}

/** Checks a `ferry_progress` call's events: 1..count once each, in order, then one response. */
export const checkProgressStream = (call: StreamedCall, count: number): ProgressCheck => {
  const progress = call.events
    .filter((event) => event.message.method === 'notifications/progress')
    .map((event) => event.message.params?.progress as number)
  const counts = new Map<number, number>()
  for (const value of progress) counts.set(value, (counts.get(value) ?? 0) + 1)
  const seqs = call.events.map((event) => event.seq)
  return {
    progress,
    missing: Array.from({ length: count }, (_, i) => i + 1).filter((v) => !counts.has(v)),
    duplicated: [...counts].filter(([, n]) => n > 1).map(([v]) => v),
    inOrder: progress.every((value, i) => i === 0 || value > progress[i - 1]!),
    seqsContiguous: seqs.every((seq, i) => seq === i + 1),
    responses: call.events.filter((event) => isFinal(event.message)).length,
  }
}

/** Outcome counters of short calls made with {@link callWithRetry}. */
export interface CallStats {
  /** Calls that got their answer. */
  ok: number
  /** Attempts that failed in transport (network error, 5xx from the proxy or a replica). */
  retried: number
  /** Calls that never got an answer. */
  lost: number
  /** Answers that did not match their call (wrong id or content). */
  wrong: number
  /** 404s: the session was gone. */
  notFound: number
  /** Why each retried attempt failed. */
  retryReasons: string[]
}

export const newCallStats = (): CallStats => ({
  ok: 0,
  retried: 0,
  lost: 0,
  wrong: 0,
  notFound: 0,
  retryReasons: [],
})

let nextId = 50_000

/**
 * A short request, retried with a new id (as an MCP client would) when it fails in transport
 * before any answer: a network error or a 502/503. Resolves with the response; a 404 throws
 * {@link SessionLostError}.
 */
export const callWithRetry = async (
  session: RawSession,
  method: string,
  params: Record<string, unknown>,
  stats: CallStats,
  attempts = 5
): Promise<JsonRpcMessage> => {
  for (let attempt = 1; ; attempt++) {
    const id = nextId++
    let response: Response
    try {
      response = await session.post(
        { jsonrpc: '2.0', id, method, params },
        {},
        AbortSignal.timeout(15_000)
      )
    } catch (error) {
      stats.retried++
      stats.retryReasons.push(`fetch: ${(error as Error).message}`)
      if (attempt >= attempts) {
        stats.lost++
        throw error
      }
      await sleep(20)
      continue
    }
    if (response.status === 404) {
      stats.notFound++
      await response.body?.cancel().catch(() => undefined)
      throw new SessionLostError(`${method} answered 404`)
    }
    if (response.status >= 500) {
      stats.retried++
      const text = await response.text()
      stats.retryReasons.push(`${response.status} ${text.slice(0, 200)}`)
      if (attempt >= attempts) {
        stats.lost++
        throw new Error(`${method} answered ${response.status}: ${text}`)
      }
      await sleep(20)
      continue
    }
    let message: JsonRpcMessage
    try {
      message = await responseOf(response)
    } catch (error) {
      // The answer broke off part-way: the server may have acted on it, but the client retries.
      stats.retried++
      stats.retryReasons.push(`answer broke off: ${(error as Error).message}`)
      if (attempt >= attempts) {
        stats.lost++
        throw error
      }
      continue
    }
    if (message.id !== id) {
      stats.wrong++
      throw new Error(`answer to ${id} carried id ${String(message.id)}`)
    }
    stats.ok++
    return message
  }
}
