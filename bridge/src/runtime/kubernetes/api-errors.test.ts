/**
 * @module
 * Tests for reading Kubernetes API failures: ApiException-like objects, the real
 * `ApiException`s and `Watch` errors `@kubernetes/client-node` throws against a
 * loopback HTTP server, transport errors, and the retry backoff (Retry-After).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiException, BatchV1Api, KubeConfig, Watch } from '@kubernetes/client-node'
import { type ApiFailure, apiFailure, backoffMs } from './api-errors.ts'

const status = (code: number, reason: string, message: string) =>
  JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message })

const FORBIDDEN =
  'jobs.batch is forbidden: User "system:serviceaccount:ferry:bridge" cannot create resource "jobs" in API group "batch" in the namespace "sessions"'
const INVALID =
  'Job.batch "ferry-abc" is invalid: spec.template.spec.containers[1].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of …'

describe('apiFailure on ApiException-like objects', () => {
  it.each([
    [403, 'Forbidden', false, FORBIDDEN],
    [404, 'NotFound', false, 'jobs.batch "x" not found'],
    [409, 'AlreadyExists', false, 'jobs.batch "x" already exists'],
    [422, 'Invalid', false, INVALID],
    [429, 'TooManyRequests', true, 'Too many requests, please try again later.'],
    [500, 'InternalError', true, 'Internal error occurred: etcdserver: leader changed'],
    [503, 'ServiceUnavailable', true, 'The server is currently unable to handle the request'],
    [504, 'Timeout', true, 'Timeout: request did not complete within requested timeout'],
  ])('%i %s → retryable: %s, with the server’s own message', (code, reason, retryable, message) => {
    const failure = apiFailure({ code, body: status(code, reason, message), headers: {} })
    expect(failure).toEqual({ status: code, reason, message, retryable })
  })

  it('names the missing permission of a 403 and the invalid field of a 422', () => {
    expect(apiFailure({ code: 403, body: status(403, 'Forbidden', FORBIDDEN) }).message).toMatch(
      /cannot create resource "jobs" in API group "batch"/
    )
    expect(apiFailure({ code: 422, body: status(422, 'Invalid', INVALID) }).message).toContain(
      'spec.template.spec.containers[1].name'
    )
  })

  it('reads Retry-After (seconds) from the headers', () => {
    const failure = apiFailure({
      code: 429,
      body: status(429, 'TooManyRequests', 'slow down'),
      headers: { 'retry-after': '3' },
    })
    expect(failure).toMatchObject({ status: 429, retryable: true, retryAfterSeconds: 3 })
    // An HTTP-date (or garbage) is not a number of seconds: ignored, not NaN.
    const dated = apiFailure({
      code: 503,
      body: '',
      headers: { 'retry-after': 'Wed, 21 Oct 2026 07:28:00 GMT' },
    })
    expect(dated).not.toHaveProperty('retryAfterSeconds')
    expect(dated.retryable).toBe(true)
  })

  it('copes with a missing body (401), a non-JSON body and an already parsed body', () => {
    expect(apiFailure({ code: 401, body: undefined })).toEqual({
      status: 401,
      reason: undefined,
      message: 'HTTP 401',
      retryable: false,
    })
    const html = `<html>${'x'.repeat(1000)}</html>`
    const fromProxy = apiFailure({ code: 502, body: html })
    expect(fromProxy).toMatchObject({ status: 502, retryable: true })
    expect(fromProxy.message).toBe(html.slice(0, 300))
    expect(
      apiFailure({
        code: 409,
        body: { reason: 'Conflict', message: 'the object has been modified' },
      })
    ).toMatchObject({ status: 409, reason: 'Conflict', message: 'the object has been modified' })
  })
})

describe('apiFailure on transport errors', () => {
  it('reports an unreachable API server as retryable, with the error code', () => {
    const refused = new TypeError('fetch failed', {
      cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), {
        code: 'ECONNREFUSED',
      }),
    })
    expect(apiFailure(refused)).toEqual({
      status: 0,
      message: 'cannot reach the Kubernetes API: ECONNREFUSED',
      retryable: true,
    })
  })

  it('falls back to the message, and survives non-errors', () => {
    expect(apiFailure(new Error('socket hang up'))).toMatchObject({
      status: 0,
      retryable: true,
      message: 'cannot reach the Kubernetes API: socket hang up',
    })
    expect(apiFailure(undefined)).toMatchObject({ status: 0, retryable: true })
    expect(apiFailure('boom')).toMatchObject({ status: 0, retryable: true })
  })
})

describe('apiFailure on what @kubernetes/client-node really throws', () => {
  let server: Server
  let kc: KubeConfig
  /** Status code (and Retry-After) the next request is answered with. */
  let answer: { code: number; retryAfter?: string; body?: string } = { code: 200 }

  beforeAll(async () => {
    server = createServer((request, response) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (answer.retryAfter) headers['Retry-After'] = answer.retryAfter
      response.writeHead(answer.code, headers)
      response.end(answer.body ?? status(answer.code, 'Reason', `answer ${answer.code}`))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    kc = new KubeConfig()
    kc.loadFromClusterAndUser(
      {
        name: 'c',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
      { name: 'u', token: 't' }
    )
  })
  afterAll(async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  })

  const createError = async (): Promise<unknown> => {
    try {
      await kc.makeApiClient(BatchV1Api).createNamespacedJob({
        namespace: 'ns',
        body: { metadata: { name: 'x' } },
      })
    } catch (error) {
      return error
    }
    throw new Error('the call succeeded')
  }

  it('an ApiException: status, reason, message and Retry-After', async () => {
    answer = { code: 429, retryAfter: '2' }
    const error = await createError()
    expect(error).toBeInstanceOf(ApiException)
    expect(apiFailure(error)).toEqual({
      status: 429,
      reason: 'Reason',
      message: 'answer 429',
      retryable: true,
      retryAfterSeconds: 2,
    })
    answer = { code: 403, body: status(403, 'Forbidden', FORBIDDEN) }
    expect(apiFailure(await createError())).toMatchObject({
      status: 403,
      reason: 'Forbidden',
      message: FORBIDDEN,
      retryable: false,
    })
  })

  it('a 401 (no body)', async () => {
    answer = { code: 401 }
    expect(apiFailure(await createError())).toMatchObject({ status: 401, retryable: false })
  })

  it('a refused connection', async () => {
    // A port that was free a moment ago (fetch refuses "bad ports" such as 1 outright).
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const { port } = closed.address() as AddressInfo
    await new Promise<void>((resolve) => closed.close(() => resolve()))
    const dead = new KubeConfig()
    dead.loadFromClusterAndUser(
      { name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true },
      { name: 'u' }
    )
    let error: unknown
    try {
      await dead.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: 'ns' })
    } catch (caught) {
      error = caught
    }
    expect(apiFailure(error)).toEqual({
      status: 0,
      message: 'cannot reach the Kubernetes API: ECONNREFUSED',
      retryable: true,
    })
  })

  it('a Watch that the server refuses carries its HTTP status', async () => {
    const watchError = async (code: number) => {
      answer = { code }
      return new Promise<unknown>((resolve) => {
        void new Watch(kc).watch('/api/v1/namespaces/ns/pods', {}, () => undefined, resolve)
      })
    }
    expect(apiFailure(await watchError(403))).toMatchObject({ status: 403, retryable: false })
    expect(apiFailure(await watchError(500))).toMatchObject({ status: 500, retryable: true })
    expect(apiFailure(await watchError(429))).toMatchObject({ status: 429, retryable: true })
  })
})

describe('backoffMs', () => {
  const failure = (retryAfterSeconds?: number): ApiFailure => ({
    status: retryAfterSeconds === undefined ? 500 : 429,
    message: 'x',
    retryable: true,
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  })

  it('grows exponentially with jitter, up to a cap', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const base = Math.min(5_000, 200 * 2 ** attempt)
      for (let i = 0; i < 20; i++) {
        const ms = backoffMs(attempt, failure())
        expect(ms).toBeGreaterThanOrEqual(base / 2)
        expect(ms).toBeLessThanOrEqual(base)
      }
    }
  })

  it('waits at least as long as Retry-After asks, capped at 10 s', () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      expect(backoffMs(attempt, failure(2))).toBeGreaterThanOrEqual(2_000)
      expect(backoffMs(attempt, failure(2))).toBeLessThanOrEqual(5_000)
    }
    expect(backoffMs(0, failure(3600))).toBe(10_000)
  })

  it('never retries in a tight loop, even on Retry-After: 0 or a negative value', () => {
    for (const seconds of [0, -5]) {
      for (let i = 0; i < 20; i++)
        expect(backoffMs(0, failure(seconds))).toBeGreaterThanOrEqual(100)
    }
  })
})
