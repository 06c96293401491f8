import { describe, expect, it } from 'vitest'
import {
  FRAME_PROTOCOL,
  decodeBridgeFrame,
  decodeSidecarFrame,
  encodeFrame,
  type BridgeFrameHeader,
  type SidecarFrameHeader,
} from './frames.ts'

const request = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' })

describe('frame protocol', () => {
  it('names the subprotocol ferry.v1', () => {
    expect(FRAME_PROTOCOL).toBe('ferry.v1')
  })
})

describe('bridge frames', () => {
  const cases: Array<[BridgeFrameHeader, string | undefined]> = [
    [{ t: 'req', ch: 0 }, request],
    [
      { t: 'req', ch: 5, tp: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', ts: 'a=b' },
      request,
    ],
    [{ t: 'msg', ch: 1 }, '{"jsonrpc":"2.0","method":"notifications/initialized"}'],
    [{ t: 'get', ch: 2 }, undefined],
    [{ t: 'get', ch: 3, after: 'rMQ.4' }, undefined],
    [{ t: 'detach', ch: 4 }, undefined],
    [{ t: 'bye', ch: 9 }, undefined],
  ]

  it.each(cases)('round-trips %j', (header, payload) => {
    const decoded = decodeBridgeFrame(encodeFrame(header, payload))
    expect(decoded).toEqual({ header, payload })
  })

  it('is not decoded as a sidecar frame', () => {
    for (const [header, payload] of cases) {
      expect(decodeSidecarFrame(encodeFrame(header, payload))).toBeUndefined()
    }
  })
})

describe('sidecar frames', () => {
  const cases: Array<[SidecarFrameHeader, string | undefined]> = [
    [
      { t: 'ev', ch: 0, id: '_.1' },
      '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}',
    ],
    [{ t: 'ev', ch: 1, id: 'rMQ.2', fin: 1 }, '{"jsonrpc":"2.0","id":1,"result":{}}'],
    [{ t: 'end', ch: 1, reason: 'complete' }, undefined],
    [{ t: 'end', ch: 1, reason: 'cancelled' }, undefined],
    [{ t: 'end', ch: 1, reason: 'takeover' }, undefined],
    [{ t: 'end', ch: 1, reason: 'session' }, undefined],
    [{ t: 'ack', ch: 7 }, undefined],
    [{ t: 'err', ch: 7, code: 'duplicate_id', message: 'used' }, undefined],
    [{ t: 'gap', ch: 2, missed: 0 }, undefined],
    [{ t: 'gap', ch: 2, missed: 12 }, undefined],
    [{ t: 'exit', reason: 'server_exit', code: 3, signal: null }, undefined],
    [{ t: 'exit', reason: 'shutdown', code: null, signal: 'SIGTERM' }, undefined],
    [{ t: 'exit', reason: 'deleted' }, undefined],
    [{ t: 'exit', reason: 'idle' }, undefined],
    [
      { t: 'ev', ch: 1, id: '_.3', tp: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      '{"jsonrpc":"2.0","method":"notifications/message"}',
    ],
    [{ t: 'ev', ch: 1, id: 'rMQ.2', fin: 1, errorType: 'tool_error', evicted: 4 }, '{}'],
    [{ t: 'exit', reason: 'idle', ageMs: 900_000, evicted: 2 }, undefined],
  ]

  it.each(cases)('round-trips %j', (header, payload) => {
    expect(decodeSidecarFrame(encodeFrame(header, payload))).toEqual({ header, payload })
  })

  it('is not decoded as a bridge frame', () => {
    for (const [header, payload] of cases) {
      expect(decodeBridgeFrame(encodeFrame(header, payload))).toBeUndefined()
    }
  })
})

describe('payloads', () => {
  it('are kept byte for byte, newlines included', () => {
    const payloads = [
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'x', params: { a: [1, 2] } }, null, 2),
      '\n',
      '\n\n{"a":1}\n',
      'line one\r\nline two\n',
      '{"text":"é ✓ 🚀 \\n escaped"}',
      '',
    ]
    for (const payload of payloads) {
      const text = encodeFrame({ t: 'req', ch: 1 }, payload)
      expect(decodeBridgeFrame(text)?.payload).toBe(payload)
      const ev = encodeFrame({ t: 'ev', ch: 1, id: '_.1' }, payload)
      expect(decodeSidecarFrame(ev)?.payload).toBe(payload)
    }
  })

  it('are absent from a frame without one, and empty, not absent, when empty', () => {
    expect(encodeFrame({ t: 'ack', ch: 1 })).toBe('{"t":"ack","ch":1}')
    expect(decodeSidecarFrame('{"t":"ack","ch":1}')?.payload).toBeUndefined()
    expect(decodeSidecarFrame('{"t":"ack","ch":1}\n')?.payload).toBe('')
  })

  it('are not parsed: the header decides alone', () => {
    expect(decodeBridgeFrame('{"t":"req","ch":1}\nnot json at all')).toEqual({
      header: { t: 'req', ch: 1 },
      payload: 'not json at all',
    })
  })
})

describe('malformed frames', () => {
  it.each([
    ['empty text', ''],
    ['a newline only', '\n'],
    ['not JSON', 'hello'],
    ['truncated JSON', '{"t":"req","ch":1'],
    ['a JSON array', '[{"t":"req","ch":1}]'],
    ['a JSON string', '"req"'],
    ['null', 'null'],
    ['a header split over lines', '{\n"t":"req","ch":1}'],
    ['no type', '{"ch":1}'],
    ['an unknown type', '{"t":"nope","ch":1}'],
    ['a sidecar type', '{"t":"ack","ch":1}'],
    ['no channel', '{"t":"req"}'],
    ['a negative channel', '{"t":"req","ch":-1}'],
    ['a fractional channel', '{"t":"req","ch":1.5}'],
    ['a string channel', '{"t":"req","ch":"1"}'],
    ['a numeric after', '{"t":"get","ch":1,"after":5}'],
    ['an after over 256 characters', `{"t":"get","ch":1,"after":"${'a'.repeat(257)}"}`],
    ['a traceparent over 128 characters', `{"t":"req","ch":1,"tp":"${'a'.repeat(129)}"}`],
    ['a tracestate over 512 characters', `{"t":"msg","ch":1,"ts":"${'a'.repeat(513)}"}`],
  ])('rejects a bridge frame with %s', (_name, text) => {
    expect(decodeBridgeFrame(text)).toBeUndefined()
  })

  it.each([
    ['an event without an id', '{"t":"ev","ch":1}'],
    ['fin other than 1', '{"t":"ev","ch":1,"id":"_.1","fin":2}'],
    ['fin true', '{"t":"ev","ch":1,"id":"_.1","fin":true}'],
    ['an unknown end reason', '{"t":"end","ch":1,"reason":"bored"}'],
    ['an unknown error code', '{"t":"err","ch":1,"code":"oops","message":"m"}'],
    ['an error without a message', '{"t":"err","ch":1,"code":"bad_message"}'],
    ['a negative gap', '{"t":"gap","ch":1,"missed":-1}'],
    ['a fractional gap', '{"t":"gap","ch":1,"missed":0.5}'],
    ['an unknown exit reason', '{"t":"exit","reason":"tired"}'],
    ['a fractional exit code', '{"t":"exit","reason":"server_exit","code":1.5}'],
    ['a bridge type', '{"t":"req","ch":1}'],
    ['a numeric error type', '{"t":"ev","ch":1,"id":"_.1","fin":1,"errorType":-32000}'],
    ['a negative eviction count', '{"t":"ev","ch":1,"id":"_.1","evicted":-1}'],
    ['a fractional session age', '{"t":"exit","reason":"idle","ageMs":1.5}'],
  ])('rejects a sidecar frame with %s', (_name, text) => {
    expect(decodeSidecarFrame(text)).toBeUndefined()
  })
})
