import { describe, it, expect } from 'vitest'
import { NdjsonDecoder, serializeLine } from './ndjson.ts'

const collect = (maxLineBytes = 1024) => {
  const lines: string[] = []
  const oversize: number[] = []
  const decoder = new NdjsonDecoder({
    maxLineBytes,
    onLine: (line) => lines.push(line),
    onOversize: (bytes) => oversize.push(bytes),
  })
  return { decoder, lines, oversize }
}

describe('NdjsonDecoder', () => {
  it('splits several lines in one chunk', () => {
    const { decoder, lines } = collect()
    decoder.push(Buffer.from('{"a":1}\n{"b":2}\n'))
    expect(lines).toEqual(['{"a":1}', '{"b":2}'])
  })

  it('joins a line split across chunks', () => {
    const { decoder, lines } = collect()
    decoder.push(Buffer.from('{"a":'))
    decoder.push(Buffer.from('1}\n{"b"'))
    expect(lines).toEqual(['{"a":1}'])
    decoder.push(Buffer.from(':2}\n'))
    expect(lines).toEqual(['{"a":1}', '{"b":2}'])
  })

  it('joins a long line pushed one byte at a time', () => {
    const { decoder, lines } = collect(100_000)
    const text = JSON.stringify({ data: 'x'.repeat(50_000) })
    for (const byte of Buffer.from(text + '\n')) decoder.push(Buffer.from([byte]))
    expect(lines).toEqual([text])
  })

  it('strips \\r before \\n, also when the \\r ends a chunk', () => {
    const { decoder, lines } = collect()
    decoder.push(Buffer.from('{"a":1}\r\n{"b":2}\r'))
    decoder.push(Buffer.from('\n'))
    expect(lines).toEqual(['{"a":1}', '{"b":2}'])
  })

  it('skips empty lines', () => {
    const { decoder, lines } = collect()
    decoder.push(Buffer.from('\n\r\n{"a":1}\n\n'))
    decoder.push(Buffer.from('\n'))
    expect(lines).toEqual(['{"a":1}'])
  })

  it('decodes multi-byte characters split across chunks', () => {
    const { decoder, lines } = collect()
    const text = '{"s":"héllo 🚢 ferry"}'
    const bytes = Buffer.from(text + '\n')
    const ship = bytes.indexOf(Buffer.from('🚢'))
    const e = bytes.indexOf(Buffer.from('é'))
    decoder.push(bytes.subarray(0, e + 1))
    decoder.push(bytes.subarray(e + 1, ship + 2))
    decoder.push(bytes.subarray(ship + 2, ship + 3))
    decoder.push(bytes.subarray(ship + 3))
    expect(lines).toEqual([text])
  })

  it('accepts a line of exactly the limit', () => {
    const { decoder, lines, oversize } = collect(10)
    decoder.push(Buffer.from('0123456789\n'))
    expect(lines).toEqual(['0123456789'])
    expect(oversize).toEqual([])
  })

  it('drops an oversize line in one chunk and keeps the next', () => {
    const { decoder, lines, oversize } = collect(10)
    decoder.push(Buffer.from('01234567890\n{"ok":1}\n'))
    expect(oversize).toEqual([11])
    expect(lines).toEqual(['{"ok":1}'])
  })

  it('reports an oversize line spread over chunks once and skips to the next newline', () => {
    const { decoder, lines, oversize } = collect(10)
    decoder.push(Buffer.from('{"a":1}\n012345'))
    decoder.push(Buffer.from('6789abcdef'))
    decoder.push(Buffer.from('x'.repeat(1000)))
    decoder.push(Buffer.from('yyy\n{"b":2}'))
    decoder.push(Buffer.from('\n'))
    expect(oversize).toEqual([16])
    expect(lines).toEqual(['{"a":1}', '{"b":2}'])
  })

  it('never buffers more than the limit', () => {
    const { decoder, oversize } = collect(10)
    decoder.push(Buffer.from('0123456789'))
    expect(oversize).toEqual([])
    decoder.push(Buffer.from('a'))
    expect(oversize).toEqual([11])
  })

  it('flushes an unterminated final line on end()', () => {
    const { decoder, lines } = collect()
    decoder.push(Buffer.from('{"a":1}\n{"b":'))
    decoder.push(Buffer.from('2}'))
    decoder.end()
    expect(lines).toEqual(['{"a":1}', '{"b":2}'])
    decoder.end()
    expect(lines).toHaveLength(2)
  })

  it('does not flush the rest of an oversize line on end()', () => {
    const { decoder, lines, oversize } = collect(4)
    decoder.push(Buffer.from('0123456'))
    decoder.end()
    decoder.push(Buffer.from('{}\n'))
    expect(oversize).toEqual([7])
    expect(lines).toEqual(['{}'])
  })
})

describe('serializeLine', () => {
  it('appends a newline', () => {
    expect(serializeLine('{"a":1}')).toBe('{"a":1}\n')
  })

  it('turns pretty-printed JSON into one equivalent line', () => {
    const value = { a: [1, 2], s: 'line1\nline2\r\n' }
    const line = serializeLine(JSON.stringify(value, null, 2).replace(/\n/g, '\r\n'))
    expect(line.endsWith('\n')).toBe(true)
    expect(line.slice(0, -1)).not.toMatch(/[\r\n]/)
    expect(JSON.parse(line)).toEqual(value)
  })
})
