import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import { describe, expect, it } from 'vitest'
import { httpTraceFields, messageParent } from './http-context.ts'

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const META = { tp: `00-${TRACE}-b7ad6b7169203331-01`, ts: 'm=1' }
const HTTP = { tp: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }

describe('messageParent', () => {
  it('continues the _meta context and links the HTTP one', () => {
    const { context, links } = messageParent(META, HTTP)
    expect(trace.getSpanContext(context)).toMatchObject({
      traceId: TRACE,
      spanId: 'b7ad6b7169203331',
      isRemote: true,
    })
    expect(trace.getSpanContext(context)?.traceState?.get('m')).toBe('1')
    expect(links?.map((link) => link.context.spanId)).toEqual(['00f067aa0ba902b7'])
  })

  it('continues the HTTP context when the message has none (or an invalid one)', () => {
    for (const meta of [undefined, { tp: 'garbage' }]) {
      const { context, links } = messageParent(meta, HTTP)
      expect(trace.getSpanContext(context)?.spanId).toBe('00f067aa0ba902b7')
      expect(links).toBeUndefined()
    }
  })

  it('does not link a context to itself, and starts a trace with neither', () => {
    expect(messageParent(HTTP, HTTP).links).toBeUndefined()
    expect(messageParent(undefined, undefined).context).toBe(ROOT_CONTEXT)
  })
})

describe('httpTraceFields', () => {
  it('reads traceparent and tracestate only', () => {
    expect(httpTraceFields(new Headers())).toBeUndefined()
    expect(httpTraceFields(new Headers({ traceparent: 'a', tracestate: 'b' }))).toEqual({
      tp: 'a',
      ts: 'b',
    })
    expect(httpTraceFields(new Headers({ traceparent: 'a' }))).toEqual({ tp: 'a' })
  })
})
