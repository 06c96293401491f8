import { describe, expect, it } from 'vitest'
import {
  STANDALONE_STREAM,
  formatEventId,
  parseEventId,
  requestIdOfStream,
  requestStreamKey,
} from './event-id.ts'

const ids: Array<string | number> = [
  0,
  1,
  -1,
  42,
  1.5,
  -0.25,
  Number.MAX_SAFE_INTEGER,
  1e21,
  '',
  '1',
  'abc',
  'a.b.c',
  '.',
  '..1',
  '_',
  '_.1',
  'r',
  'rMQ.1',
  'with space',
  'quote " and \\ backslash',
  'élan ✓ 日本語 🚀',
  '\u0000\n\t',
  '??>>~~', // base64 of this uses + and / before the URL-safe rewrite
]

describe('request stream keys', () => {
  it.each(ids.map((id) => [JSON.stringify(id), id]))('round-trip %s', (_name, id) => {
    const key = requestStreamKey(id)
    expect(key).toMatch(/^r[A-Za-z0-9_-]*$/)
    expect(requestIdOfStream(key)).toBe(id)
  })

  it('are unique per id, and tell numbers from strings', () => {
    const keys = ids.map(requestStreamKey)
    expect(new Set(keys).size).toBe(ids.length)
    expect(requestStreamKey(1)).not.toBe(requestStreamKey('1'))
    expect(requestIdOfStream(requestStreamKey('1'))).toBe('1')
    expect(requestIdOfStream(requestStreamKey(1))).toBe(1)
  })

  it('handle very long ids', () => {
    const id = 'x'.repeat(300_000) + '✓'
    const key = requestStreamKey(id)
    expect(requestIdOfStream(key)).toBe(id)
  })

  it.each([
    ['the standalone stream', STANDALONE_STREAM],
    ['an empty key', ''],
    ['a bare r', 'r'],
    ['another prefix', 'xMQ'],
    ['characters outside base64url', 'rM+Q'],
    ['padding', 'rMQ=='],
    ['a dot', 'rM.Q'],
    ['base64 of non-JSON', `r${btoa('hello').replace(/=+$/, '')}`],
    ['base64 of null', `r${btoa('null').replace(/=+$/, '')}`],
    ['base64 of true', `r${btoa('true').replace(/=+$/, '')}`],
    ['base64 of an object', `r${btoa('{}').replace(/=+$/, '')}`],
    ['base64 of an array', `r${btoa('[1]').replace(/=+$/, '')}`],
    ['invalid UTF-8', 'r_w'],
    ['an impossible base64 length', 'rMQQQQ'],
    ['non-canonical base64 (stray bits)', 'rMR'],
    ['JSON with whitespace', `r${btoa(' 1').replace(/=+$/, '')}`],
    ['a non-canonical number', `r${btoa('1.0').replace(/=+$/, '')}`],
  ])('reject %s', (_name, key) => {
    expect(requestIdOfStream(key)).toBeUndefined()
  })
})

describe('event ids', () => {
  it.each(ids.map((id) => [JSON.stringify(id), id]))(
    'round-trip for request id %s',
    (_name, id) => {
      const stream = requestStreamKey(id)
      for (const seq of [0, 1, 17, 999_999_999_999_999]) {
        const eventId = formatEventId(stream, seq)
        expect(parseEventId(eventId)).toEqual({ stream, seq })
        expect(requestIdOfStream(parseEventId(eventId)!.stream)).toBe(id)
      }
    }
  )

  it('round-trip for the standalone stream', () => {
    expect(formatEventId(STANDALONE_STREAM, 0)).toBe('_.0')
    expect(parseEventId('_.0')).toEqual({ stream: '_', seq: 0 })
    expect(parseEventId('_.42')).toEqual({ stream: '_', seq: 42 })
  })

  it.each([
    ['empty', ''],
    ['no dot', '_5'],
    ['no stream', '.5'],
    ['no sequence', '_.'],
    ['only a dot', '.'],
    ['a stream alone', '_'],
    ['a leading zero', '_.01'],
    ['a negative sequence', '_.-1'],
    ['a fractional sequence', '_.1.5'],
    ['an exponent', '_.1e3'],
    ['a hex sequence', '_.0x1'],
    ['a sequence over 15 digits', '_.1000000000000000'],
    ['whitespace', ' _.1'],
    ['trailing whitespace', '_.1 '],
    ['an unknown stream', 'x.1'],
    ['a doubled standalone', '__.1'],
    ['an empty request key', 'r.1'],
    ['a request key that is not base64url', 'r!!.1'],
    ['a request key of non-JSON', `r${btoa('nope').replace(/=+$/, '')}.1`],
    ['a non-canonical request key', 'rMR.1'],
  ])('reject %s', (_name, id) => {
    expect(parseEventId(id)).toBeUndefined()
  })
})
