/** @module Tests for the gate on concurrent local session starts. */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { StartGate, StartTooLate, type StartTurn } from './start-gate.ts'

const never = new AbortController().signal
/** A start of `server` with all the time in the world. */
const request = (server = 'files', deadline = Number.MAX_SAFE_INTEGER) => ({ server, deadline })

/** Whether `promise` settled by the time queued callbacks ran. */
const settled = async (promise: Promise<unknown>) => {
  let done = false
  promise.then(
    () => (done = true),
    () => (done = true)
  )
  await new Promise((resolve) => setImmediate(resolve))
  return done
}

afterEach(() => {
  vi.useRealTimers()
})

describe('StartGate', () => {
  it('admits exactly the limit at once and queues the next', async () => {
    const gate = new StartGate(2)
    const first = await gate.acquire(never, request())
    await gate.acquire(never, request())
    const third = gate.acquire(never, request())
    expect(await settled(third)).toBe(false)
    expect([gate.running, gate.waiting]).toEqual([2, 1])
    first.release(true)
    expect(await settled(third)).toBe(true)
    expect([gate.running, gate.waiting]).toEqual([2, 0])
  })

  it('admits waiting starts in arrival order, a newcomer after them', async () => {
    const gate = new StartGate(1)
    const held = await gate.acquire(never, request())
    const order: string[] = []
    const queue = (name: string) =>
      gate.acquire(never, request()).then((turn) => {
        order.push(name)
        return turn
      })
    const waiters = ['a', 'b', 'c'].map(queue)
    held.release(true)
    const newcomer = queue('newcomer')
    for (const waiter of waiters) (await waiter).release(true)
    ;(await newcomer).release(true)
    expect(order).toEqual(['a', 'b', 'c', 'newcomer'])
    expect([gate.running, gate.waiting]).toEqual([0, 0])
  })

  it('frees a slot once however often it is released', async () => {
    const gate = new StartGate(1)
    const turn = await gate.acquire(never, request())
    const next = gate.acquire(never, request())
    turn.release(false)
    turn.release(true) // must not free the slot the next start now holds
    expect(await settled(next)).toBe(true)
    expect(await settled(gate.acquire(never, request()))).toBe(false)
    expect(gate.running).toBe(1)
  })

  it('gives up a wait when its signal aborts, with the reason, holding nothing', async () => {
    const gate = new StartGate(1)
    const held = await gate.acquire(never, request())
    const controller = new AbortController()
    const waiting = gate.acquire(controller.signal, request())
    const after = gate.acquire(never, request())
    const reason = new Error('start timeout')
    controller.abort(reason)
    await expect(waiting).rejects.toBe(reason)
    expect(gate.waiting).toBe(1)
    held.release(true)
    expect(await settled(after)).toBe(true)
    expect([gate.running, gate.waiting]).toEqual([1, 0])
  })

  it('refuses an already aborted start without taking a slot', async () => {
    const gate = new StartGate(1)
    const reason = new Error('client gone')
    await expect(gate.acquire(AbortSignal.abort(reason), request())).rejects.toBe(reason)
    expect(gate.running).toBe(0)
  })

  it('is off with limit 0 but still counts', async () => {
    const gate = new StartGate(0)
    const turns: StartTurn[] = await Promise.all(
      Array.from({ length: 100 }, () => gate.acquire(never, request()))
    )
    expect([gate.running, gate.waiting]).toEqual([100, 0])
    for (const turn of turns) turn.release(true)
    expect(gate.running).toBe(0)
  })

  it('refuses a negative or fractional limit', () => {
    expect(() => new StartGate(-1)).toThrow(RangeError)
    expect(() => new StartGate(1.5)).toThrow(RangeError)
  })
})

describe('StartGate under overload', () => {
  /** Holds the only slot for `ms` of (fake) time, for a server that then answered. */
  const learn = async (gate: StartGate, server: string, ms: number) => {
    const turn = await gate.acquire(never, request(server))
    vi.advanceTimersByTime(ms)
    turn.release(true)
  }

  it('refuses at its turn a start with less time left than its server takes, and admits the next', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] })
    const gate = new StartGate(1)
    await learn(gate, 'files', 1000)
    const held = await gate.acquire(never, request('other'))
    const late = gate.acquire(never, request('files', Date.now() + 1500))
    const timely = gate.acquire(never, request('files', Date.now() + 5000))
    vi.advanceTimersByTime(800) // `late` has 700 ms left, `timely` 4200 ms
    held.release(true)
    const refusal = await late.catch((error: unknown) => error)
    expect(refusal).toBeInstanceOf(StartTooLate)
    expect((refusal as StartTooLate).typicalMs).toBe(1000)
    expect((refusal as Error).message).toBe(
      'too little time left to start: a start of this server takes about 1000 ms'
    )
    expect(await settled(timely)).toBe(true)
    expect([gate.running, gate.waiting]).toEqual([1, 0])
  })

  it('learns start times per server, as a moving average of answered starts only', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] })
    const gate = new StartGate(1)
    await learn(gate, 'slow', 4000)
    await learn(gate, 'quick', 200)
    await learn(gate, 'quick', 600) // average 200 + (600 − 200) / 4 = 300
    // A start that never answered (killed at its timeout) says nothing about start times.
    const unanswered = await gate.acquire(never, request('quick'))
    vi.advanceTimersByTime(30_000)
    unanswered.release(false)
    const held = await gate.acquire(never, request('other'))
    const quick = gate.acquire(never, request('quick', Date.now() + 1000))
    const slow = gate.acquire(never, request('slow', Date.now() + 1000))
    held.release(true)
    expect(await settled(quick)).toBe(true)
    ;(await quick).release(false)
    await expect(slow).rejects.toMatchObject({ name: 'StartTooLate', typicalMs: 4000 })
  })

  it('admits a start at once while a slot is free, however little time it has', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] })
    const gate = new StartGate(2)
    await learn(gate, 'files', 1000)
    expect(await settled(gate.acquire(never, request('files', Date.now() + 10)))).toBe(true)
  })

  it('frees the slot when every waiter is refused', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] })
    const gate = new StartGate(1)
    await learn(gate, 'files', 1000)
    const held = await gate.acquire(never, request('other'))
    const late = [1, 2].map(() =>
      gate.acquire(never, request('files', Date.now() + 500)).catch((error: unknown) => error)
    )
    held.release(true)
    for (const refusal of await Promise.all(late)) expect(refusal).toBeInstanceOf(StartTooLate)
    expect([gate.running, gate.waiting]).toEqual([0, 0])
  })
})
