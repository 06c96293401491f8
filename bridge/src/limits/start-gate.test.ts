/** @module Tests for the gate on concurrent local session starts. */
import { describe, expect, it } from 'vitest'
import { StartGate, type StartSlotRelease } from './start-gate.ts'

const never = new AbortController().signal

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

describe('StartGate', () => {
  it('admits exactly the limit at once and queues the next', async () => {
    const gate = new StartGate(2)
    const first = await gate.acquire(never)
    await gate.acquire(never)
    const third = gate.acquire(never)
    expect(await settled(third)).toBe(false)
    expect([gate.running, gate.waiting]).toEqual([2, 1])
    first()
    expect(await settled(third)).toBe(true)
    expect([gate.running, gate.waiting]).toEqual([2, 0])
  })

  it('admits waiting starts in arrival order, a newcomer after them', async () => {
    const gate = new StartGate(1)
    const held = await gate.acquire(never)
    const order: string[] = []
    const waiters = ['a', 'b', 'c'].map((name) =>
      gate.acquire(never).then((release) => {
        order.push(name)
        return release
      })
    )
    held()
    const newcomer = gate.acquire(never).then((release) => {
      order.push('newcomer')
      return release
    })
    for (const waiter of waiters) (await waiter)()
    ;(await newcomer)()
    expect(order).toEqual(['a', 'b', 'c', 'newcomer'])
    expect([gate.running, gate.waiting]).toEqual([0, 0])
  })

  it('frees a slot once however often it is released', async () => {
    const gate = new StartGate(1)
    const release = await gate.acquire(never)
    const next = gate.acquire(never)
    release()
    release() // must not free the slot the next start now holds
    expect(await settled(next)).toBe(true)
    expect(await settled(gate.acquire(never))).toBe(false)
    expect(gate.running).toBe(1)
  })

  it('gives up a wait when its signal aborts, with the reason, holding nothing', async () => {
    const gate = new StartGate(1)
    const held = await gate.acquire(never)
    const controller = new AbortController()
    const waiting = gate.acquire(controller.signal)
    const after = gate.acquire(never)
    const reason = new Error('start timeout')
    controller.abort(reason)
    await expect(waiting).rejects.toBe(reason)
    expect(gate.waiting).toBe(1)
    held()
    expect(await settled(after)).toBe(true)
    expect([gate.running, gate.waiting]).toEqual([1, 0])
  })

  it('refuses an already aborted start without taking a slot', async () => {
    const gate = new StartGate(1)
    const reason = new Error('client gone')
    await expect(gate.acquire(AbortSignal.abort(reason))).rejects.toBe(reason)
    expect(gate.running).toBe(0)
  })

  it('is off with limit 0 but still counts', async () => {
    const gate = new StartGate(0)
    const releases: StartSlotRelease[] = await Promise.all(
      Array.from({ length: 100 }, () => gate.acquire(never))
    )
    expect([gate.running, gate.waiting]).toEqual([100, 0])
    for (const release of releases) release()
    expect(gate.running).toBe(0)
  })

  it('refuses a negative or fractional limit', () => {
    expect(() => new StartGate(-1)).toThrow(RangeError)
    expect(() => new StartGate(1.5)).toThrow(RangeError)
  })
})
