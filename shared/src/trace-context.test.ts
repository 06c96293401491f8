import { describe, expect, it } from 'vitest'
import {
  formatTraceparent,
  parseTraceparent,
  traceContextOf,
  withTraceContext,
} from './trace-context.ts'

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const SPAN = 'b7ad6b7169203331'

describe('traceparent', () => {
  it('parses and formats W3C version 00', () => {
    const value = `00-${TRACE}-${SPAN}-01`
    expect(parseTraceparent(value)).toEqual({ traceId: TRACE, spanId: SPAN, traceFlags: 1 })
    expect(formatTraceparent(TRACE, SPAN, 1)).toBe(value)
    expect(formatTraceparent(TRACE, SPAN, 0)).toBe(`00-${TRACE}-${SPAN}-00`)
  })

  it('accepts later versions with more fields, and refuses what W3C calls invalid', () => {
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-00-future`)?.spanId).toBe(SPAN)
    for (const bad of [
      `00-${TRACE}-${SPAN}-01-extra`,
      `ff-${TRACE}-${SPAN}-01`,
      `00-${'0'.repeat(32)}-${SPAN}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `00-${TRACE.toUpperCase()}-${SPAN}-01`,
      'not a traceparent',
    ]) {
      expect(parseTraceparent(bad)).toBeUndefined()
    }
  })
})

describe('_meta trace context (SEP-414)', () => {
  const request = (meta?: Record<string, unknown>) => ({
    jsonrpc: '2.0' as const,
    id: 1,
    method: 'tools/call',
    params: { name: 'x', ...(meta ? { _meta: meta } : {}) },
  })

  it('reads traceparent and tracestate when they are strings', () => {
    expect(traceContextOf(request({ traceparent: 'tp', tracestate: 'ts' }))).toEqual({
      tp: 'tp',
      ts: 'ts',
    })
    expect(traceContextOf(request({ traceparent: 'tp', tracestate: 3 }))).toEqual({ tp: 'tp' })
    expect(traceContextOf(request({ traceparent: 1 }))).toBeUndefined()
    expect(traceContextOf(request())).toBeUndefined()
    expect(traceContextOf({ jsonrpc: '2.0', method: 'ping' })).toBeUndefined()
  })

  it('replaces the context in a copy, keeping baggage and every other key', () => {
    const original = request({ traceparent: 'old', tracestate: 'old=1', baggage: 'k=v', x: 1 })
    const copy = withTraceContext(original, { tp: 'new' })
    expect(copy.params._meta).toEqual({ traceparent: 'new', baggage: 'k=v', x: 1 })
    expect(copy.params.name).toBe('x')
    expect(original.params._meta).toEqual({
      traceparent: 'old',
      tracestate: 'old=1',
      baggage: 'k=v',
      x: 1,
    })
    expect(withTraceContext({ jsonrpc: '2.0', method: 'ping' }, { tp: 't', ts: 's' })).toEqual({
      jsonrpc: '2.0',
      method: 'ping',
      params: { _meta: { traceparent: 't', tracestate: 's' } },
    })
  })
})
