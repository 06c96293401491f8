/**
 * @module test/e2e/resume
 *
 * Resuming a broken POST stream with `GET` + `Last-Event-ID` (SEP-1699), over raw HTTP: the
 * client drops the connection of a long call part-way, reconnects with the last event id it saw,
 * and gets exactly what it missed — the remaining progress notifications and the result — once
 * each and in order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseEventId } from '@ferry/shared'
import { startBridge, type TestBridge } from '../helpers/bridge.ts'
import {
  type JsonRpcMessage,
  type RawSession,
  type SseEvent,
  openRawSession,
  sseEvents,
} from '../helpers/mcp.ts'

let bridge: TestBridge
let session: RawSession

beforeAll(async () => {
  bridge = await startBridge()
  session = await openRawSession(bridge.url('fixture'))
})
afterAll(() => bridge?.close())

const COUNT = 8

const progressCall = (id: number, token: string) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: {
    name: 'ferry_progress',
    arguments: { count: COUNT, intervalMs: 100 },
    _meta: { progressToken: token },
  },
})

const getStream = (lastEventId: string, signal?: AbortSignal) =>
  fetch(session.url, {
    method: 'GET',
    headers: {
      accept: 'text/event-stream',
      'mcp-session-id': session.sessionId,
      'mcp-protocol-version': session.protocolVersion,
      'last-event-id': lastEventId,
    },
    ...(signal ? { signal } : {}),
  })

const seqOf = (event: SseEvent) => parseEventId(event.id!)!.seq

describe('resuming a POST stream with Last-Event-ID', () => {
  it('delivers the rest of the stream after the last event received, once and in order', async () => {
    const controller = new AbortController()
    const response = await session.post(progressCall(1, 'resume-1'), {}, controller.signal)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)

    const before: SseEvent[] = []
    let progressSeen = 0
    for await (const event of sseEvents(response.body!)) {
      before.push(event)
      if (event.data && (JSON.parse(event.data) as JsonRpcMessage).method) progressSeen++
      if (progressSeen === 2) break
    }
    controller.abort()
    // The first event primes the stream: an id and no data (the client can resume from it).
    expect(before[0]?.id).toBeTruthy()
    expect(before[0]?.data).toBe('')
    const lastId = before.at(-1)!.id!
    expect(lastId).toBeTruthy()

    const resumed = await getStream(lastId, AbortSignal.timeout(20_000))
    expect(resumed.status).toBe(200)
    expect(resumed.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const after: SseEvent[] = []
    for await (const event of sseEvents(resumed.body!)) {
      if (event.data) after.push(event)
      if (event.data && 'result' in (JSON.parse(event.data) as JsonRpcMessage)) break
    }
    await resumed.body?.cancel().catch(() => undefined)

    // Every event has an id on the same stream; sequence numbers carry on without gaps.
    const all = [...before, ...after]
    expect(all.every((event) => event.id)).toBe(true)
    const streams = new Set(all.map((event) => parseEventId(event.id!)?.stream))
    expect(streams.size).toBe(1)
    const seqs = all.map(seqOf)
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i))
    expect(seqOf(after[0]!)).toBe(seqOf(before.at(-1)!) + 1)

    // The messages: progress 1..COUNT, once each and in order, then the result.
    const messages = all
      .filter((event) => event.data)
      .map((event) => JSON.parse(event.data) as JsonRpcMessage)
    const progress = messages.filter((m) => m.method === 'notifications/progress')
    expect(progress.map((m) => m.params?.progress)).toEqual(
      Array.from({ length: COUNT }, (_, i) => i + 1)
    )
    expect(progress.every((m) => m.params?.progressToken === 'resume-1')).toBe(true)
    const final = messages.at(-1)!
    expect(final.id).toBe(1)
    expect(final.result?.content).toEqual([{ type: 'text', text: `done ${COUNT}` }])
    expect(messages.filter((m) => m.id === 1)).toHaveLength(1)
  })

  it('answers 400 for a Last-Event-ID that is not one of ours', async () => {
    for (const id of ['not-an-event-id', '42', 'r!.1', '_.x']) {
      const response = await getStream(id)
      expect(response.status, `Last-Event-ID ${JSON.stringify(id)}`).toBe(400)
      const body = (await response.json()) as JsonRpcMessage
      expect(body.error?.message).toBeTypeOf('string')
    }
  })

  it('keeps the session usable after a resume', async () => {
    const answer = await session.request('tools/call', {
      name: 'ferry_echo',
      arguments: { text: 'still here' },
    })
    expect(answer.result?.content).toEqual([{ type: 'text', text: 'still here' }])
  })
})
