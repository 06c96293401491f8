/** @module Tests for the SSE response body: exact wire text, closing, slow clients, keep-alive. */
import { describe, expect, it, vi } from 'vitest'
import { SSE_HEADERS, SseStream } from './sse-stream.ts'

const decoder = new TextDecoder()

/** Reads the whole body until it ends; fails if it does not end within `ms`. */
const readAll = async (body: ReadableStream<Uint8Array>, ms = 2000): Promise<string> => {
  const reader = body.getReader()
  const timer = setTimeout(() => void reader.cancel(), ms)
  let text = ''
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
    }
  } finally {
    clearTimeout(timer)
  }
  return text
}

const quiet = { keepAliveMs: 0, maxBacklogBytes: 1024 * 1024 }

describe('SseStream wire format', () => {
  it('writes message events with and without an id', async () => {
    const sse = new SseStream(quiet)
    sse.event('r1.1', '{"jsonrpc":"2.0","method":"x"}')
    sse.event(undefined, '{"a":1}')
    sse.close()
    expect(await readAll(sse.body)).toBe(
      'event: message\nid: r1.1\ndata: {"jsonrpc":"2.0","method":"x"}\n\n' +
        'event: message\ndata: {"a":1}\n\n'
    )
  })

  it('writes the SEP-1699 priming event: id, retry and empty data', async () => {
    const sse = new SseStream(quiet)
    sse.prime('rMQ.0', 1500)
    sse.close()
    expect(await readAll(sse.body)).toBe('id: rMQ.0\nretry: 1500\ndata: \n\n')
  })

  it('writes a bare retry hint', async () => {
    const sse = new SseStream(quiet)
    sse.retry(0)
    sse.retry(250)
    sse.close()
    expect(await readAll(sse.body)).toBe('retry: 0\n\nretry: 250\n\n')
  })

  it('writes comments on one line, whatever newlines they contain', async () => {
    const sse = new SseStream(quiet)
    sse.comment('3 event(s) were evicted')
    sse.comment('a\nb\nc')
    sse.comment('')
    sse.close()
    expect(await readAll(sse.body)).toBe(': 3 event(s) were evicted\n\n: a b c\n\n: \n\n')
  })

  it('keeps the order of everything written', async () => {
    const sse = new SseStream(quiet)
    sse.prime('_.0', 10)
    sse.comment('hi')
    sse.event('_.1', '1')
    sse.retry(10)
    sse.close()
    expect(await readAll(sse.body)).toBe(
      'id: _.0\nretry: 10\ndata: \n\n: hi\n\nevent: message\nid: _.1\ndata: 1\n\nretry: 10\n\n'
    )
  })

  it('exports the headers an SSE response needs', () => {
    expect(SSE_HEADERS['content-type']).toBe('text/event-stream')
    expect(SSE_HEADERS['cache-control']).toContain('no-cache')
    expect(SSE_HEADERS['x-accel-buffering']).toBe('no')
  })
})

describe('SseStream lifecycle', () => {
  it('close() ends the stream; later writes and closes are ignored, onclose is not called', async () => {
    const sse = new SseStream({ keepAliveMs: 5, maxBacklogBytes: 1024 })
    const onclose = vi.fn()
    sse.onclose = onclose
    const reader = sse.body.getReader()
    sse.event('_.1', 'x')
    expect(sse.isClosed).toBe(false)
    sse.close()
    expect(sse.isClosed).toBe(true)
    expect(() => {
      sse.event('_.2', 'y')
      sse.comment('late')
      sse.prime('_.0', 1)
      sse.retry(1)
      sse.close()
    }).not.toThrow()
    const first = await reader.read()
    expect(decoder.decode(first.value)).toBe('event: message\nid: _.1\ndata: x\n\n')
    expect((await reader.read()).done).toBe(true)
    expect(onclose).not.toHaveBeenCalled()
  })

  it('a reader that cancels calls onclose("client") once, and writes stop', async () => {
    const sse = new SseStream(quiet)
    const onclose = vi.fn()
    sse.onclose = onclose
    const reader = sse.body.getReader()
    sse.event('_.1', 'x')
    await reader.read()
    await reader.cancel()
    expect(onclose).toHaveBeenCalledTimes(1)
    expect(onclose).toHaveBeenCalledWith('client')
    expect(sse.isClosed).toBe(true)
    expect(() => {
      sse.event('_.2', 'y')
      sse.close()
    }).not.toThrow()
    await reader.cancel()
    expect(onclose).toHaveBeenCalledTimes(1)
  })

  it('cancelling the body itself (no reader) also reports the client', async () => {
    const sse = new SseStream(quiet)
    const onclose = vi.fn()
    sse.onclose = onclose
    await sse.body.cancel('gone')
    expect(onclose.mock.calls).toEqual([['client']])
  })

  it('cuts off a reader that falls more than maxBacklogBytes behind', async () => {
    // Each comment `: x\n\n` is 5 bytes.
    const sse = new SseStream({ keepAliveMs: 0, maxBacklogBytes: 10 })
    const onclose = vi.fn()
    sse.onclose = onclose
    const reader = sse.body.getReader()
    sse.comment('x')
    sse.comment('x')
    // Exactly at the limit: still fine.
    expect(onclose).not.toHaveBeenCalled()
    expect(sse.isClosed).toBe(false)
    sse.comment('x')
    expect(onclose.mock.calls).toEqual([['backlog']])
    expect(sse.isClosed).toBe(true)
    await expect(reader.read()).rejects.toThrow('client too slow')
    // Nothing more happens after the cut.
    sse.comment('x')
    sse.close()
    expect(onclose).toHaveBeenCalledTimes(1)
  })

  it('counts only what the reader has not taken yet', async () => {
    const sse = new SseStream({ keepAliveMs: 0, maxBacklogBytes: 10 })
    const onclose = vi.fn()
    sse.onclose = onclose
    const reader = sse.body.getReader()
    for (let i = 0; i < 20; i++) {
      sse.comment('x')
      sse.comment('x')
      expect(decoder.decode((await reader.read()).value)).toBe(': x\n\n')
      expect(decoder.decode((await reader.read()).value)).toBe(': x\n\n')
    }
    expect(onclose).not.toHaveBeenCalled()
    sse.close()
    expect((await reader.read()).done).toBe(true)
  })

  it('a single event larger than the backlog cuts the stream at once', () => {
    const sse = new SseStream({ keepAliveMs: 0, maxBacklogBytes: 16 })
    const onclose = vi.fn()
    sse.onclose = onclose
    sse.event('_.1', 'x'.repeat(100))
    expect(onclose.mock.calls).toEqual([['backlog']])
  })

  it('sends keep-alive comments while open', async () => {
    const sse = new SseStream({ keepAliveMs: 5, maxBacklogBytes: 1024 * 1024 })
    const reader = sse.body.getReader()
    sse.event('_.1', 'x')
    let text = ''
    const deadline = Date.now() + 5000
    while (!text.includes(': keep-alive\n\n')) {
      expect(Date.now()).toBeLessThan(deadline)
      const { value, done } = await reader.read()
      expect(done).toBe(false)
      text += decoder.decode(value)
    }
    expect(text.startsWith('event: message\nid: _.1\ndata: x\n\n: keep-alive\n\n')).toBe(true)
    sse.close()
    // Closing stops the keep-alive: the stream ends instead of growing.
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      expect(decoder.decode(value)).toBe(': keep-alive\n\n')
    }
  })

  it('sends no keep-alive when keepAliveMs is 0', async () => {
    const sse = new SseStream({ keepAliveMs: 0, maxBacklogBytes: 1024 })
    await new Promise((resolve) => setTimeout(resolve, 30))
    sse.close()
    expect(await readAll(sse.body)).toBe('')
  })

  it('a keep-alive that overflows the backlog of a stalled reader cuts it off', async () => {
    const sse = new SseStream({ keepAliveMs: 2, maxBacklogBytes: 64 })
    const closed = new Promise<string>((resolve) => (sse.onclose = resolve))
    const reason = await Promise.race([
      closed,
      new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000)),
    ])
    expect(reason).toBe('backlog')
    expect(sse.isClosed).toBe(true)
  })
})
