import { describe, expect, it } from 'vitest'
import {
  ErrorCode,
  classifyMessage,
  errorResponse,
  metaOf,
  progressTokenOf,
  type JSONRPCNotification,
  type JSONRPCRequest,
} from './jsonrpc.ts'

describe('classifyMessage', () => {
  it.each([
    ['number id', { jsonrpc: '2.0', id: 1, method: 'tools/list' }],
    ['zero id', { jsonrpc: '2.0', id: 0, method: 'ping' }],
    ['negative fractional id', { jsonrpc: '2.0', id: -1.5, method: 'ping' }],
    ['string id', { jsonrpc: '2.0', id: 'a.b', method: 'tools/call', params: { name: 'x' } }],
    ['empty string id', { jsonrpc: '2.0', id: '', method: 'ping' }],
    ['explicitly undefined params', { jsonrpc: '2.0', id: 2, method: 'ping', params: undefined }],
  ])('classifies a request with a %s', (_name, message) => {
    expect(classifyMessage(message)).toEqual({ kind: 'request', message })
  })

  it.each([
    ['without params', { jsonrpc: '2.0', method: 'notifications/initialized' }],
    [
      'with params',
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't' } },
    ],
  ])('classifies a notification %s', (_name, message) => {
    expect(classifyMessage(message)).toEqual({ kind: 'notification', message })
  })

  it.each([
    ['a result', { jsonrpc: '2.0', id: 1, result: {} }],
    ['a result with a string id', { jsonrpc: '2.0', id: 'x', result: { tools: [] } }],
    ['an error', { jsonrpc: '2.0', id: 1, error: { code: -32601, message: 'nope' } }],
    [
      'an error with data',
      { jsonrpc: '2.0', id: 'x', error: { code: 1, message: 'm', data: { why: 1 } } },
    ],
    [
      'an error with a null id',
      { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'p' } },
    ],
  ])('classifies %s as a response', (_name, message) => {
    expect(classifyMessage(message)).toEqual({ kind: 'response', message })
  })

  it.each([
    ['undefined', undefined],
    ['null', null],
    ['a string', '{"jsonrpc":"2.0","method":"x"}'],
    ['a number', 42],
    ['a batch', [{ jsonrpc: '2.0', method: 'x' }]],
    ['an empty object', {}],
    ['no jsonrpc member', { id: 1, method: 'x' }],
    ['jsonrpc 1.0', { jsonrpc: '1.0', id: 1, method: 'x' }],
    ['jsonrpc as a number', { jsonrpc: 2, id: 1, method: 'x' }],
    ['array params', { jsonrpc: '2.0', id: 1, method: 'x', params: [1, 2] }],
    ['string params', { jsonrpc: '2.0', method: 'x', params: 'p' }],
    ['null params', { jsonrpc: '2.0', method: 'x', params: null }],
    ['a null request id', { jsonrpc: '2.0', id: null, method: 'x' }],
    ['an undefined request id', { jsonrpc: '2.0', id: undefined, method: 'x' }],
    ['an object request id', { jsonrpc: '2.0', id: { a: 1 }, method: 'x' }],
    ['a boolean request id', { jsonrpc: '2.0', id: true, method: 'x' }],
    ['an infinite request id', { jsonrpc: '2.0', id: Infinity, method: 'x' }],
    ['a NaN request id', { jsonrpc: '2.0', id: Number.NaN, method: 'x' }],
    ['a numeric method', { jsonrpc: '2.0', id: 1, method: 7 }],
    ['neither method, result nor error', { jsonrpc: '2.0', id: 1 }],
    ['a result without an id', { jsonrpc: '2.0', result: {} }],
    ['a result with a null id', { jsonrpc: '2.0', id: null, result: {} }],
    ['a non-object result', { jsonrpc: '2.0', id: 1, result: 'ok' }],
    ['an array result', { jsonrpc: '2.0', id: 1, result: [] }],
    ['a null result', { jsonrpc: '2.0', id: 1, result: null }],
    [
      'both result and error',
      { jsonrpc: '2.0', id: 1, result: {}, error: { code: 1, message: 'm' } },
    ],
    ['an error without an id', { jsonrpc: '2.0', error: { code: 1, message: 'm' } }],
    ['an error with a boolean id', { jsonrpc: '2.0', id: false, error: { code: 1, message: 'm' } }],
    ['a string error', { jsonrpc: '2.0', id: 1, error: 'bad' }],
    ['a null error', { jsonrpc: '2.0', id: 1, error: null }],
    ['an error without a code', { jsonrpc: '2.0', id: 1, error: { message: 'm' } }],
    ['an error with a string code', { jsonrpc: '2.0', id: 1, error: { code: '1', message: 'm' } }],
    ['an error without a message', { jsonrpc: '2.0', id: 1, error: { code: 1 } }],
    ['an error with a numeric message', { jsonrpc: '2.0', id: 1, error: { code: 1, message: 2 } }],
  ])('rejects %s', (_name, value) => {
    expect(classifyMessage(value)).toBeUndefined()
  })

  it('returns the very object it was given, not a copy', () => {
    const message = { jsonrpc: '2.0', id: 1, method: 'x', extra: true }
    expect(classifyMessage(message)?.message).toBe(message)
  })
})

describe('errorResponse', () => {
  it('builds an error response without data', () => {
    expect(errorResponse(3, ErrorCode.InvalidParams, 'bad')).toEqual({
      jsonrpc: '2.0',
      id: 3,
      error: { code: -32602, message: 'bad' },
    })
  })

  it('includes data when given, even null', () => {
    expect(errorResponse('a', ErrorCode.ServerError, 'm', { why: 'x' }).error).toEqual({
      code: -32000,
      message: 'm',
      data: { why: 'x' },
    })
    expect(errorResponse('a', 1, 'm', null).error).toHaveProperty('data', null)
    expect(errorResponse('a', 1, 'm').error).not.toHaveProperty('data')
  })

  it('builds a null-id response that classifies as a response', () => {
    const response = errorResponse(null, ErrorCode.ParseError, 'Parse error')
    expect(response.id).toBeNull()
    expect(classifyMessage(JSON.parse(JSON.stringify(response)))?.kind).toBe('response')
  })
})

describe('metaOf and progressTokenOf', () => {
  const request = (params?: Record<string, unknown>): JSONRPCRequest => ({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    ...(params === undefined ? {} : { params }),
  })

  it('reads _meta of requests and notifications', () => {
    const notification: JSONRPCNotification = {
      jsonrpc: '2.0',
      method: 'x',
      params: { _meta: { traceparent: 'tp' } },
    }
    expect(metaOf(notification)).toEqual({ traceparent: 'tp' })
    expect(metaOf(request({ _meta: { a: 1 } }))).toEqual({ a: 1 })
  })

  it('has no _meta without params, or when _meta is not an object', () => {
    expect(metaOf(request())).toBeUndefined()
    expect(metaOf(request({}))).toBeUndefined()
    expect(metaOf(request({ _meta: 'x' }))).toBeUndefined()
    expect(metaOf(request({ _meta: null }))).toBeUndefined()
    expect(metaOf(request({ _meta: [1] }))).toBeUndefined()
  })

  it.each([
    ['a string', 'tok'],
    ['a number', 7],
    ['zero', 0],
  ])('returns a progress token that is %s', (_name, token) => {
    expect(progressTokenOf(request({ _meta: { progressToken: token } }))).toBe(token)
  })

  it.each([
    ['absent', {}],
    ['null', { progressToken: null }],
    ['an object', { progressToken: { a: 1 } }],
    ['a boolean', { progressToken: true }],
    ['infinite', { progressToken: Infinity }],
  ])('returns no progress token when it is %s', (_name, meta) => {
    expect(progressTokenOf(request({ _meta: meta }))).toBeUndefined()
  })

  it('ignores a progressToken outside _meta', () => {
    expect(progressTokenOf(request({ progressToken: 'tok' }))).toBeUndefined()
  })
})
