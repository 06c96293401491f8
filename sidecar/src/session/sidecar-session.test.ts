import { describe, expect, it } from 'vitest'
import {
  type BridgeFrameHeader,
  type JSONRPCId,
  type SidecarFrameHeader,
  STANDALONE_STREAM,
  formatEventId,
  parseEventId,
  requestStreamKey,
  silentLogger,
} from '@ferry/shared'
import { EventLog, type EventLogLimits } from './event-log.ts'
import { SidecarSession, type BridgePeer, type SessionEnd } from './sidecar-session.ts'

interface Sent {
  header: SidecarFrameHeader
  payload: string | undefined
}

let nextPeerId = 1

/** A bridge connection that records what the session sends it. */
class FakePeer implements BridgePeer {
  readonly id = nextPeerId++
  readonly sent: Sent[] = []
  send(header: SidecarFrameHeader, payload?: string): void {
    this.sent.push({ header, payload })
  }
  /** Frames sent on one channel (exit frames have none and are left out). */
  on(ch: number): Sent[] {
    return this.sent.filter((f) => 'ch' in f.header && f.header.ch === ch)
  }
  /** Parsed payloads of the events on one channel. */
  events(ch: number): Array<{ id: string; fin: boolean; message: Record<string, unknown> }> {
    return this.on(ch)
      .filter((f) => f.header.t === 'ev')
      .map((f) => {
        const header = f.header as Extract<SidecarFrameHeader, { t: 'ev' }>
        return { id: header.id, fin: header.fin === 1, message: JSON.parse(f.payload!) }
      })
  }
  types(ch: number): string[] {
    return this.on(ch).map((f) => f.header.t)
  }
  clear(): void {
    this.sent.length = 0
  }
}

/** The MCP server as the session sees it: records the lines written to it. */
class FakeServer {
  readonly lines: string[] = []
  running = true
  send(line: string): boolean {
    if (!this.running) throw new Error('server process is not running')
    this.lines.push(line)
    return true
  }
  get messages(): Array<Record<string, unknown>> {
    return this.lines.map((line) => JSON.parse(line))
  }
}

const DEFAULT_LIMITS: EventLogLimits = { maxEvents: 1000, maxBytes: 1 << 20, maxAgeMs: 60_000 }

const setup = (options: { limits?: Partial<EventLogLimits>; idleTimeoutMs?: number } = {}) => {
  let now = 1_000
  const clock = {
    now: () => now,
    advance: (ms: number) => (now += ms),
  }
  const log = new EventLog<{ peer: BridgePeer; ch: number }>(
    { ...DEFAULT_LIMITS, ...options.limits },
    clock.now
  )
  const server = new FakeServer()
  const session = new SidecarSession({
    log,
    server,
    logger: silentLogger,
    idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
    now: clock.now,
  })
  const ends: SessionEnd[] = []
  session.onend = (end) => ends.push(end)
  const peers: FakePeer[] = []
  const peer = () => {
    const p = new FakePeer()
    peers.push(p)
    session.addPeer(p)
    return p
  }
  const frame = (p: BridgePeer, header: BridgeFrameHeader, payload?: unknown) =>
    session.handleBridgeFrame(p, {
      header,
      payload:
        payload === undefined || typeof payload === 'string' ? payload : JSON.stringify(payload),
    })
  let serial = 0
  /** Server → client: each message carries a unique serial so deliveries can be traced. */
  const serverSends = (message: Record<string, unknown>) => {
    const params = (message.params as Record<string, unknown> | undefined) ?? {}
    const withSerial =
      'method' in message ? { ...message, params: { ...params, serial: ++serial } } : message
    session.handleServerLine(JSON.stringify(withSerial))
  }
  return { session, log, server, clock, ends, peers, peer, frame, serverSends }
}

const request = (id: JSONRPCId, method = 'tools/call', params: Record<string, unknown> = {}) => ({
  jsonrpc: '2.0',
  id,
  method,
  params,
})
const withToken = (id: JSONRPCId, token: JSONRPCId) =>
  request(id, 'tools/call', { name: 'slow', _meta: { progressToken: token } })
const result = (id: JSONRPCId) => ({ jsonrpc: '2.0', id, result: { content: [] } })
const progress = (token: JSONRPCId, value: number) => ({
  jsonrpc: '2.0',
  method: 'notifications/progress',
  params: { progressToken: token, progress: value },
})
const logMessage = (data: string) => ({
  jsonrpc: '2.0',
  method: 'notifications/message',
  params: { level: 'info', data },
})
const streamOf = (eventId: string) => parseEventId(eventId)!.stream

/**
 * Every server message (told apart by the serial serverSends adds, or a response's id) was
 * delivered on exactly one stream, whatever channel, peer, replay or resume carried it.
 */
const expectOneStreamPerMessage = (peers: FakePeer[]) => {
  const streams = new Map<string, Set<string>>()
  for (const p of peers) {
    for (const f of p.sent) {
      if (f.header.t !== 'ev') continue
      const message = JSON.parse(f.payload!)
      const key =
        message.params?.serial !== undefined ? `s${message.params.serial}` : `r${message.id}`
      const set = streams.get(key) ?? new Set()
      set.add(streamOf(f.header.id))
      streams.set(key, set)
    }
  }
  for (const [key, set] of streams) expect([key, [...set]]).toEqual([key, [...set].slice(0, 1)])
}

describe('client requests and responses', () => {
  it('sends a response on its request stream, with fin, and nothing after', () => {
    const { session, server, peer, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'req', ch: 1 }, request(7))
    expect(server.messages).toEqual([request(7)])
    expect(session.inFlight).toBe(1)
    serverSends(result(7))
    expect(p.events(1)).toEqual([
      { id: formatEventId(requestStreamKey(7), 1), fin: true, message: result(7) },
    ])
    expect(p.types(1)).toEqual(['ev'])
    expect(session.inFlight).toBe(0)
  })

  it('keeps string and number ids apart', () => {
    const { peer, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'req', ch: 1 }, request(1))
    frame(p, { t: 'req', ch: 2 }, request('1'))
    serverSends(result('1'))
    serverSends(result(1))
    expect(p.events(1).map((e) => e.message)).toEqual([result(1)])
    expect(p.events(2).map((e) => e.message)).toEqual([result('1')])
    expect(p.on(1)).toHaveLength(1)
    expect(p.on(2)).toHaveLength(1)
  })

  it('drops a response to no pending request instead of delivering it anywhere', () => {
    const { session, peer, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'get', ch: 0 })
    frame(p, { t: 'req', ch: 1 }, request(1))
    serverSends(result(99))
    expect(p.sent.filter((f) => f.header.t === 'ev')).toEqual([])
    expect(session.inFlight).toBe(1)
  })

  it('refuses a request id that is still in flight', () => {
    const { server, peer, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'req', ch: 1 }, request(5))
    frame(p, { t: 'req', ch: 2 }, request(5))
    serverSends(result(5))
    expect(p.on(2)).toEqual([
      {
        header: expect.objectContaining({ t: 'err', ch: 2, code: 'duplicate_id' }),
        payload: undefined,
      },
    ])
    expect(server.lines).toHaveLength(1)
    expect(p.events(1).map((e) => e.message)).toEqual([result(5)])
  })

  it('lets a restarted client reuse a finished request id, with event ids that stay unique', () => {
    const { server, peer, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'req', ch: 1 }, request(5))
    serverSends(result(5))
    frame(p, { t: 'req', ch: 2 }, request(5))
    serverSends(result(5))
    expect(server.lines).toHaveLength(2)
    const first = p.on(1).map((f) => (f.header as { id?: string }).id)
    const second = p.on(2).map((f) => (f.header as { id?: string }).id)
    expect(first).toHaveLength(1)
    expect(second).toHaveLength(1)
    expect(second[0]).not.toBe(first[0])
  })

  it('writes a multi-line JSON payload to the server as one line', () => {
    const { server, peer, frame } = setup()
    const p = peer()
    const message = request(1, 'tools/call', { name: 'echo', arguments: { text: 'a\nb' } })
    frame(p, { t: 'req', ch: 1 }, JSON.stringify(message, null, 2))
    frame(p, { t: 'msg', ch: 2 }, JSON.stringify({ jsonrpc: '2.0', method: 'x/y' }, null, '\t'))
    expect(server.lines).toHaveLength(2)
    for (const line of server.lines) {
      expect(line.endsWith('\n')).toBe(true)
      expect(line.slice(0, -1)).not.toMatch(/[\r\n]/)
    }
    expect(server.messages[0]).toEqual(message)
  })

  it.each([
    ['not JSON', 'req', '{nope'],
    ['not JSON-RPC', 'req', '{"hello":1}'],
    ['no payload', 'req', undefined],
    ['a notification on req', 'req', '{"jsonrpc":"2.0","method":"x"}'],
    ['a request on msg', 'msg', JSON.stringify(request(1))],
  ] as const)('refuses %s with bad_message', (_name, t, payload) => {
    const { session, server, peer, frame } = setup()
    const p = peer()
    frame(p, { t, ch: 4 }, payload)
    expect(p.on(4)).toEqual([
      {
        header: expect.objectContaining({ t: 'err', ch: 4, code: 'bad_message' }),
        payload: undefined,
      },
    ])
    expect(server.lines).toEqual([])
    expect(session.inFlight).toBe(0)
  })

  it('forwards client notifications and responses and acknowledges them', () => {
    const { server, peer, frame } = setup()
    const p = peer()
    const notification = { jsonrpc: '2.0', method: 'notifications/initialized' }
    frame(p, { t: 'msg', ch: 3 }, notification)
    frame(p, { t: 'msg', ch: 4 }, result('server-1'))
    expect(server.messages).toEqual([notification, result('server-1')])
    expect(p.types(3)).toEqual(['ack'])
    expect(p.types(4)).toEqual(['ack'])
  })

  it('skips server output that is not a JSON-RPC message', () => {
    const { session, peer, frame } = setup()
    const p = peer()
    frame(p, { t: 'get', ch: 0 })
    session.handleServerLine('starting up...')
    session.handleServerLine('{"not":"jsonrpc"}')
    session.handleServerLine('[1,2]')
    expect(p.types(0)).toEqual(['ack'])
  })

  it('answers not_running, and opens no stream, once the server no longer takes input', () => {
    const { session, server, peer, frame } = setup()
    const p = peer()
    server.running = false
    frame(p, { t: 'req', ch: 1 }, request(1))
    frame(p, { t: 'msg', ch: 2 }, { jsonrpc: '2.0', method: 'notifications/initialized' })
    expect(p.on(1)).toEqual([
      { header: expect.objectContaining({ t: 'err', code: 'not_running' }), payload: undefined },
    ])
    expect(p.on(2)).toEqual([
      { header: expect.objectContaining({ t: 'err', code: 'not_running' }), payload: undefined },
    ])
    expect(session.inFlight).toBe(0)
  })
})

describe('progress and cancellation routing', () => {
  it('routes progress to the stream of the request that declared the token', () => {
    const { peer, peers, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'get', ch: 0 })
    frame(p, { t: 'req', ch: 1 }, withToken(1, 'tok-a'))
    frame(p, { t: 'req', ch: 2 }, withToken(2, 7))
    frame(p, { t: 'req', ch: 3 }, request(3))
    serverSends(progress(7, 1))
    serverSends(progress('tok-a', 1))
    serverSends(progress(7, 2))
    serverSends(progress('tok-a', 2))
    serverSends(result(2))
    serverSends(result(1))
    const progressOf = (ch: number) =>
      p.events(ch).map((e) => [(e.message.params as { progress?: number })?.progress, e.fin])
    expect(progressOf(1)).toEqual([
      [1, false],
      [2, false],
      [undefined, true],
    ])
    expect(progressOf(2)).toEqual([
      [1, false],
      [2, false],
      [undefined, true],
    ])
    expect(p.events(1).map((e) => streamOf(e.id))).toEqual(Array(3).fill(requestStreamKey(1)))
    expect(p.events(2).map((e) => streamOf(e.id))).toEqual(Array(3).fill(requestStreamKey(2)))
    expect(p.events(3)).toEqual([])
    expect(p.events(0)).toEqual([])
    expectOneStreamPerMessage(peers)
  })

  it('routes progress with an unknown token by the general rule', () => {
    const { peer, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'get', ch: 0 })
    frame(p, { t: 'req', ch: 1 }, withToken(1, 'a'))
    frame(p, { t: 'req', ch: 2 }, withToken(2, 'b'))
    serverSends(progress('zzz', 1))
    expect(p.events(0).map((e) => streamOf(e.id))).toEqual([STANDALONE_STREAM])
  })

  it('routes the server cancelling its own request to the stream that request went on', () => {
    const { peer, peers, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'get', ch: 0 })
    frame(p, { t: 'req', ch: 1 }, request(1))
    // One request in flight: the server's elicitation goes on its stream.
    serverSends({ jsonrpc: '2.0', id: 'srv-1', method: 'elicitation/create', params: {} })
    frame(p, { t: 'req', ch: 2 }, request(2))
    // Two in flight now; the cancellation still follows the request it names.
    serverSends({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 'srv-1', reason: 'timeout' },
    })
    expect(p.events(1).map((e) => e.message.method)).toEqual([
      'elicitation/create',
      'notifications/cancelled',
    ])
    expect(p.events(2)).toEqual([])
    expect(p.events(0)).toEqual([])
    expectOneStreamPerMessage(peers)
  })

  it('ends the stream of a request the client cancels, and still forwards the cancellation', () => {
    const { session, server, peer, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'req', ch: 1 }, withToken(1, 'tok'))
    frame(p, { t: 'req', ch: 2 }, request(2))
    serverSends(progress('tok', 1))
    const cancel = {
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 1, reason: 'user' },
    }
    frame(p, { t: 'msg', ch: 3 }, cancel)
    expect(p.types(1)).toEqual(['ev', 'end'])
    expect(p.on(1)[1]!.header).toEqual({ t: 'end', ch: 1, reason: 'cancelled' })
    expect(p.types(3)).toEqual(['ack'])
    expect(server.messages.at(-1)).toEqual(cancel)
    expect(session.inFlight).toBe(1)
    // A late response to the cancelled request goes nowhere.
    serverSends(result(1))
    expect(p.types(1)).toEqual(['ev', 'end'])
    expect(p.events(2)).toEqual([])
  })

  it('ignores a client cancellation that names no pending request', () => {
    const { session, server, peer, frame } = setup()
    const p = peer()
    frame(p, { t: 'req', ch: 1 }, request(1))
    frame(
      p,
      { t: 'msg', ch: 2 },
      {
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId: 42 },
      }
    )
    expect(p.types(1)).toEqual([])
    expect(p.types(2)).toEqual(['ack'])
    expect(server.lines).toHaveLength(2)
    expect(session.inFlight).toBe(1)
  })
})

describe('other server messages', () => {
  it('go to the single in-flight request, else to the standalone stream', () => {
    const { peer, peers, frame, serverSends } = setup()
    const p = peer()
    frame(p, { t: 'get', ch: 0 })
    serverSends(logMessage('none in flight'))
    frame(p, { t: 'req', ch: 1 }, request(1))
    serverSends(logMessage('one in flight'))
    serverSends({ jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: {} })
    frame(p, { t: 'req', ch: 2 }, request(2))
    serverSends(logMessage('two in flight'))
    serverSends({ jsonrpc: '2.0', id: 's2', method: 'roots/list', params: {} })
    serverSends(result(1))
    serverSends(logMessage('one again'))
    const data = (ch: number) =>
      p
        .events(ch)
        .map((e) => (e.message.params as { data?: string })?.data ?? e.message.method ?? 'result')
    expect(data(0)).toEqual(['none in flight', 'two in flight', 'roots/list'])
    expect(data(1)).toEqual(['one in flight', 'sampling/createMessage', 'result'])
    expect(data(2)).toEqual(['one again'])
    expectOneStreamPerMessage(peers)
  })

  it('are held on the standalone stream until a GET attaches, then replayed in order', () => {
    const { peer, peers, frame, serverSends } = setup()
    const p = peer()
    serverSends(logMessage('a'))
    serverSends(logMessage('b'))
    frame(p, { t: 'get', ch: 5 })
    expect(p.types(5)).toEqual(['ack', 'ev', 'ev'])
    serverSends(logMessage('c'))
    expect(p.events(5).map((e) => [e.id, (e.message.params as { data: string }).data])).toEqual([
      ['_.1', 'a'],
      ['_.2', 'b'],
      ['_.3', 'c'],
    ])
    // A new GET (not a resume) gets only what nobody received yet.
    const q = peer()
    serverSends(logMessage('d'))
    frame(q, { t: 'get', ch: 1 })
    expect(q.events(1).map((e) => e.id)).toEqual([])
    serverSends(logMessage('e'))
    expect(q.events(1).map((e) => e.id)).toEqual(['_.5'])
    expect(p.events(5).map((e) => e.id)).toEqual(['_.1', '_.2', '_.3', '_.4'])
    expectOneStreamPerMessage(peers)
  })

  it('move to a second GET, which takes the stream over from the first', () => {
    const { peer, frame, serverSends } = setup()
    const a = peer()
    const b = peer()
    frame(a, { t: 'get', ch: 1 })
    serverSends(logMessage('to a'))
    frame(b, { t: 'get', ch: 2 })
    expect(a.on(1).at(-1)!.header).toEqual({ t: 'end', ch: 1, reason: 'takeover' })
    serverSends(logMessage('to b'))
    expect(a.events(1).map((e) => e.id)).toEqual(['_.1'])
    expect(b.events(2).map((e) => e.id)).toEqual(['_.2'])
    // The same channel attaching again is not a takeover.
    frame(b, { t: 'get', ch: 2 })
    expect(b.types(2)).toEqual(['ack', 'ev', 'ack'])
  })

  it('are still logged when the listening peer goes away, and reach the next GET', () => {
    const { session, peer, peers, frame, serverSends } = setup()
    const a = peer()
    frame(a, { t: 'get', ch: 1 })
    serverSends(logMessage('1'))
    session.removePeer(a)
    serverSends(logMessage('2'))
    serverSends(logMessage('3'))
    expect(a.events(1).map((e) => e.id)).toEqual(['_.1'])
    const b = peer()
    frame(b, { t: 'get', ch: 1 })
    expect(b.events(1).map((e) => e.id)).toEqual(['_.2', '_.3'])
    expectOneStreamPerMessage(peers)
  })

  it('say so when held events were evicted before a GET came', () => {
    const { peer, frame, serverSends } = setup({ limits: { maxEvents: 2 } })
    for (const n of [1, 2, 3, 4, 5]) serverSends(logMessage(String(n)))
    const p = peer()
    frame(p, { t: 'get', ch: 0 })
    expect(p.on(0).map((f) => f.header)).toEqual([
      { t: 'ack', ch: 0 },
      { t: 'gap', ch: 0, missed: 3 },
      // The first frame out reports the evictions to the bridge, once.
      { t: 'ev', ch: 0, id: '_.4', evicted: 3 },
      { t: 'ev', ch: 0, id: '_.5' },
    ])
  })
})

describe('resumption', () => {
  it('replays exactly the events of that stream after the cursor, then goes live', () => {
    const { peer, peers, frame, serverSends } = setup()
    const a = peer()
    frame(a, { t: 'get', ch: 0 })
    frame(a, { t: 'req', ch: 1 }, withToken(1, 'one'))
    frame(a, { t: 'req', ch: 2 }, withToken(2, 'two'))
    serverSends(progress('one', 1))
    serverSends(progress('two', 1))
    serverSends(progress('one', 2))
    serverSends(logMessage('standalone'))
    serverSends(progress('one', 3))
    const stream1 = requestStreamKey(1)
    expect(a.events(1).map((e) => e.id)).toEqual([1, 2, 3].map((n) => `${stream1}.${n}`))
    // The client lost the POST stream after its first event and resumes on another replica.
    const b = peer()
    frame(b, { t: 'get', ch: 9, after: `${stream1}.1` })
    expect(a.on(1).at(-1)!.header).toEqual({ t: 'end', ch: 1, reason: 'takeover' })
    expect(b.types(9)).toEqual(['ack', 'ev', 'ev'])
    expect(
      b.events(9).map((e) => [e.id, (e.message.params as { progress: number }).progress])
    ).toEqual([
      [`${stream1}.2`, 2],
      [`${stream1}.3`, 3],
    ])
    serverSends(progress('one', 4))
    serverSends(result(1))
    expect(b.events(9).map((e) => [e.id, e.fin])).toEqual([
      [`${stream1}.2`, false],
      [`${stream1}.3`, false],
      [`${stream1}.4`, false],
      [`${stream1}.5`, true],
    ])
    expect(a.events(1)).toHaveLength(3)
    expectOneStreamPerMessage(peers)
  })

  it('replays a completed stream up to its response, which ends it', () => {
    const { peer, frame, serverSends } = setup()
    const a = peer()
    frame(a, { t: 'req', ch: 1 }, withToken('x.y', 't'))
    serverSends(progress('t', 1))
    serverSends(result('x.y'))
    const key = requestStreamKey('x.y')
    const b = peer()
    frame(b, { t: 'get', ch: 1, after: `${key}.0` })
    expect(b.events(1).map((e) => [e.id, e.fin])).toEqual([
      [`${key}.1`, false],
      [`${key}.2`, true],
    ])
    expect(b.types(1)).toEqual(['ack', 'ev', 'ev'])
    // Resuming after the response: nothing more, and the stream says it is over.
    frame(b, { t: 'get', ch: 2, after: `${key}.2` })
    expect(b.on(2).map((f) => f.header)).toEqual([
      { t: 'ack', ch: 2 },
      { t: 'end', ch: 2, reason: 'complete' },
    ])
  })

  it('resumes the standalone stream from a cursor, delivered events included', () => {
    const { peer, frame, serverSends } = setup()
    const a = peer()
    frame(a, { t: 'get', ch: 1 })
    for (const n of [1, 2, 3]) serverSends(logMessage(String(n)))
    const b = peer()
    frame(b, { t: 'get', ch: 1, after: '_.1' })
    expect(b.events(1).map((e) => e.id)).toEqual(['_.2', '_.3'])
    expect(a.on(1).at(-1)!.header).toEqual({ t: 'end', ch: 1, reason: 'takeover' })
  })

  it('resumes a stream whose listener detached, on another peer', () => {
    const { peer, peers, frame, serverSends } = setup()
    const a = peer()
    frame(a, { t: 'req', ch: 1 }, withToken(1, 't'))
    serverSends(progress('t', 1))
    frame(a, { t: 'detach', ch: 1 })
    serverSends(progress('t', 2))
    serverSends(result(1))
    expect(a.events(1)).toHaveLength(1)
    const b = peer()
    const key = requestStreamKey(1)
    frame(b, { t: 'get', ch: 3, after: `${key}.1` })
    expect(b.events(3).map((e) => [e.id, e.fin])).toEqual([
      [`${key}.2`, false],
      [`${key}.3`, true],
    ])
    expectOneStreamPerMessage(peers)
  })

  it('keeps logging a stream whose peer went away mid-stream, for a resume elsewhere', () => {
    const { session, peer, peers, frame, serverSends } = setup()
    const a = peer()
    frame(a, { t: 'req', ch: 1 }, withToken(1, 't'))
    serverSends(progress('t', 1))
    session.removePeer(a)
    serverSends(progress('t', 2))
    serverSends(result(1))
    expect(a.events(1)).toHaveLength(1)
    expect(session.inFlight).toBe(0)
    const b = peer()
    const key = requestStreamKey(1)
    frame(b, { t: 'get', ch: 1, after: `${key}.1` })
    expect(b.events(1).map((e) => [e.id, e.fin])).toEqual([
      [`${key}.2`, false],
      [`${key}.3`, true],
    ])
    expectOneStreamPerMessage(peers)
  })

  it('reports the evicted part of a partly evicted stream as a gap', () => {
    const { peer, frame, serverSends } = setup({ limits: { maxEvents: 2 } })
    const a = peer()
    frame(a, { t: 'req', ch: 1 }, withToken(1, 't'))
    for (const n of [1, 2, 3, 4]) serverSends(progress('t', n))
    const key = requestStreamKey(1)
    const b = peer()
    frame(b, { t: 'get', ch: 1, after: `${key}.1` })
    expect(b.on(1).map((f) => f.header)).toEqual([
      { t: 'ack', ch: 1 },
      { t: 'gap', ch: 1, missed: 1 },
      { t: 'ev', ch: 1, id: `${key}.3` },
      { t: 'ev', ch: 1, id: `${key}.4` },
    ])
  })

  it.each([
    ['evicted', true],
    ['unknown', false],
  ])(
    'answers an %s POST stream with a gap and an error response for its request',
    (_name, evict) => {
      const { log, peer, frame, serverSends } = setup({ limits: { maxEvents: 2 } })
      const a = peer()
      const id = 'gone ✓'
      const key = requestStreamKey(id)
      if (evict) {
        frame(a, { t: 'req', ch: 1 }, request(id))
        serverSends(result(id))
        for (const n of [1, 2]) serverSends(logMessage(String(n)))
        expect(log.stream(key)).toBeUndefined()
      }
      const b = peer()
      frame(b, { t: 'get', ch: 4, after: `${key}.0` })
      const frames = b.on(4)
      expect(frames.map((f) => f.header)).toEqual([
        { t: 'ack', ch: 4 },
        { t: 'gap', ch: 4, missed: 1 },
        { t: 'ev', ch: 4, id: `${key}.1`, fin: 1 },
      ])
      expect(JSON.parse(frames[2]!.payload!)).toMatchObject({
        jsonrpc: '2.0',
        id,
        error: { code: -32000 },
      })
    }
  )

  it.each(['garbage', 'x.1', '_.abc', 'rMR.1'])(
    'refuses the cursor %s as unknown_stream',
    (after) => {
      const { peer, frame } = setup()
      const p = peer()
      frame(p, { t: 'get', ch: 1, after })
      expect(p.on(1)).toEqual([
        {
          header: expect.objectContaining({ t: 'err', ch: 1, code: 'unknown_stream' }),
          payload: undefined,
        },
      ])
    }
  )
})

describe('session end', () => {
  it('acknowledges bye, ends the session as deleted once, and refuses frames after', () => {
    const { ends, server, peer, frame } = setup()
    const p = peer()
    frame(p, { t: 'bye', ch: 1 })
    expect(p.on(1).map((f) => f.header)).toEqual([{ t: 'ack', ch: 1 }])
    expect(ends).toEqual([{ reason: 'deleted' }])
    frame(p, { t: 'bye', ch: 2 })
    frame(p, { t: 'req', ch: 3 }, request(1))
    frame(p, { t: 'detach', ch: 3 })
    expect(ends).toHaveLength(1)
    expect(p.types(2)).toEqual(['err'])
    expect(p.on(3).map((f) => f.header)).toEqual([
      expect.objectContaining({ t: 'err', code: 'not_running' }),
    ])
    expect(server.lines).toEqual([])
  })

  it('close() answers every pending request with an error and tells every peer', () => {
    const { session, peer, frame, serverSends } = setup()
    const a = peer()
    const b = peer()
    const idle = peer()
    frame(a, { t: 'req', ch: 1 }, request(1))
    frame(b, { t: 'req', ch: 2 }, request('two'))
    frame(a, { t: 'req', ch: 3 }, request(3))
    serverSends(result(3))
    session.close({ reason: 'server_exit', code: 3, signal: null }, 'The MCP server exited')
    for (const [p, ch, id] of [
      [a, 1, 1],
      [b, 2, 'two'],
    ] as const) {
      const events = p.events(ch)
      expect(events).toHaveLength(1)
      expect(events[0]!.fin).toBe(true)
      expect(events[0]!.message).toEqual({
        jsonrpc: '2.0',
        id,
        error: { code: -32000, message: 'The MCP server exited' },
      })
    }
    expect(a.events(3).map((e) => e.message)).toEqual([result(3)])
    for (const p of [a, b, idle]) {
      expect(p.sent.at(-1)!.header).toEqual({
        t: 'exit',
        reason: 'server_exit',
        code: 3,
        signal: null,
        // One copy says how long the session ran, so exactly one bridge counts its end.
        ...(p === a ? { ageMs: 0 } : {}),
      })
    }
    expect(session.inFlight).toBe(0)
    frame(a, { t: 'get', ch: 5 })
    expect(a.types(5)).toEqual(['err'])
  })

  it('close() after bye reports the reason the session ended for', () => {
    const { session, peer, frame } = setup()
    const p = peer()
    frame(p, { t: 'bye', ch: 1 })
    session.close({ reason: 'server_exit', code: 0, signal: null }, 'stopped')
    expect(p.sent.at(-1)!.header).toMatchObject({ t: 'exit', reason: 'deleted' })
  })

  it('does not send exit to a peer that went away', () => {
    const { session, peer } = setup()
    const a = peer()
    const b = peer()
    session.removePeer(a)
    session.close({ reason: 'shutdown' }, 'stopped')
    expect(a.sent).toEqual([])
    expect(b.sent.map((f) => f.header.t)).toEqual(['exit'])
  })
})

describe('idle detection', () => {
  it('ends the session only when nothing is in flight for the whole timeout', () => {
    const { session, ends, clock, peer, frame, serverSends } = setup({ idleTimeoutMs: 1000 })
    expect(session.endIfIdle()).toBe(false)
    const p = peer()
    frame(p, { t: 'req', ch: 1 }, request(1))
    clock.advance(5000)
    expect(session.isIdle()).toBe(false)
    expect(session.endIfIdle()).toBe(false)
    serverSends(result(1))
    // The long request just finished: the session was in use until now.
    expect(session.endIfIdle()).toBe(false)
    clock.advance(999)
    expect(session.endIfIdle()).toBe(false)
    clock.advance(1)
    expect(session.endIfIdle()).toBe(true)
    expect(ends).toEqual([{ reason: 'idle' }])
    expect(session.endIfIdle()).toBe(true)
    expect(ends).toHaveLength(1)
  })

  it('counts client messages and GETs as use', () => {
    const { session, clock, peer, frame } = setup({ idleTimeoutMs: 1000 })
    const p = peer()
    clock.advance(900)
    frame(p, { t: 'msg', ch: 1 }, { jsonrpc: '2.0', method: 'notifications/initialized' })
    clock.advance(900)
    expect(session.isIdle()).toBe(false)
    frame(p, { t: 'get', ch: 2 })
    clock.advance(900)
    expect(session.isIdle()).toBe(false)
    clock.advance(100)
    expect(session.isIdle()).toBe(true)
  })

  it('does not count server messages as use', () => {
    const { session, clock, serverSends } = setup({ idleTimeoutMs: 1000 })
    clock.advance(999)
    serverSends(logMessage('tick'))
    clock.advance(1)
    expect(session.isIdle()).toBe(true)
  })
})

describe('delivery invariant', () => {
  it('never delivers a message on two streams through a mixed session', () => {
    const { session, peer, peers, frame, serverSends } = setup({ limits: { maxEvents: 6 } })
    const a = peer()
    const b = peer()
    frame(a, { t: 'get', ch: 0 })
    frame(a, { t: 'req', ch: 1 }, withToken(1, 'p1'))
    serverSends(logMessage('single'))
    frame(b, { t: 'req', ch: 1 }, withToken(2, 'p2'))
    serverSends(logMessage('several'))
    serverSends(progress('p2', 1))
    serverSends(progress('p1', 1))
    frame(b, { t: 'get', ch: 0 })
    serverSends(logMessage('after takeover'))
    session.removePeer(b)
    serverSends(progress('p2', 2))
    serverSends(result(2))
    serverSends(logMessage('one left'))
    const c = peer()
    frame(c, { t: 'get', ch: 0, after: '_.0' })
    frame(c, { t: 'get', ch: 1, after: `${requestStreamKey(2)}.0` })
    frame(c, { t: 'get', ch: 2, after: `${requestStreamKey(1)}.0` })
    serverSends(result(1))
    expectOneStreamPerMessage(peers)
    expect(session.inFlight).toBe(0)
  })
})

describe('trace context and outcomes, without a tracer', () => {
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const bridgeSpan = '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01'

  it('writes what the client sent, byte for byte, when nobody traces', () => {
    const { server, peer, frame } = setup()
    const p = peer()
    const payload = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"traceparent":"${traceparent}","tracestate":"a=1","baggage":"k=v"}}}`
    frame(p, { t: 'req', ch: 1 }, payload)
    frame(p, { t: 'msg', ch: 2 }, '{"jsonrpc":"2.0","method":"notifications/initialized"}')
    expect(server.lines).toEqual([
      `${payload}\n`,
      '{"jsonrpc":"2.0","method":"notifications/initialized"}\n',
    ])
  })

  it("gives the server the bridge's span from the frame, keeping the other _meta keys", () => {
    const { server, peer, frame } = setup()
    const p = peer()
    const meta = { traceparent, tracestate: 'client=1', baggage: 'k=v', progressToken: 't' }
    frame(p, { t: 'req', ch: 1, tp: bridgeSpan }, request(1, 'tools/call', { _meta: meta }))
    frame(p, { t: 'msg', ch: 2, tp: bridgeSpan, ts: 'b=2' }, logMessage('x'))
    expect(server.messages.map((m) => (m.params as { _meta: unknown })._meta)).toEqual([
      { traceparent: bridgeSpan, baggage: 'k=v', progressToken: 't' },
      { traceparent: bridgeSpan, tracestate: 'b=2' },
    ])
  })

  it("puts the response's error type on its fin event", () => {
    const { peer, frame, serverSends } = setup()
    const p = peer()
    for (const id of [1, 2, 3]) frame(p, { t: 'req', ch: id }, request(id))
    serverSends(result(1))
    serverSends({ jsonrpc: '2.0', id: 2, result: { content: [], isError: true } })
    serverSends({ jsonrpc: '2.0', id: 3, error: { code: -32602, message: 'bad' } })
    expect([1, 2, 3].map((ch) => p.on(ch)[0]!.header)).toEqual([
      { t: 'ev', ch: 1, id: `${requestStreamKey(1)}.1`, fin: 1 },
      { t: 'ev', ch: 2, id: `${requestStreamKey(2)}.1`, fin: 1, errorType: 'tool_error' },
      { t: 'ev', ch: 3, id: `${requestStreamKey(3)}.1`, fin: 1, errorType: '-32602' },
    ])
  })
})
