import { describe, expect, it } from 'vitest'
import { EventLog, type EventLogLimits } from './event-log.ts'

const UNBOUNDED: EventLogLimits = { maxEvents: 1e9, maxBytes: 1e12, maxAgeMs: 1e12 }

const setup = (limits: Partial<EventLogLimits> = {}) => {
  let now = 0
  const log = new EventLog({ ...UNBOUNDED, ...limits }, () => now)
  const evictions: number[] = []
  log.onevict = (count) => evictions.push(count)
  return {
    log,
    evictions,
    setNow: (t: number) => (now = t),
  }
}

const seqs = (events: ReadonlyArray<{ seq: number }>) => events.map((e) => e.seq)

describe('EventLog', () => {
  it('numbers each stream from 1, independently', () => {
    const { log } = setup()
    const a = log.open('a')
    const b = log.open('b')
    expect(log.open('a')).toBe(a)
    expect(log.append(a, 'x', false).seq).toBe(1)
    expect(log.append(b, 'y', false).seq).toBe(1)
    expect(log.append(a, 'z', true)).toMatchObject({ stream: 'a', seq: 2, payload: 'z', fin: true })
    expect(seqs(a.events)).toEqual([1, 2])
    expect(log.size).toBe(3)
    expect(log.byteSize).toBe(3)
    expect(log.streamCount).toBe(2)
  })

  it('is bounded by count, oldest first across streams', () => {
    const { log, evictions } = setup({ maxEvents: 3 })
    const a = log.open('a')
    const b = log.open('b')
    log.append(a, 'a1', false)
    log.append(b, 'b1', false)
    log.append(a, 'a2', false)
    log.append(b, 'b2', false)
    log.append(b, 'b3', false)
    expect(log.size).toBe(3)
    expect(seqs(a.events)).toEqual([2])
    expect(seqs(b.events)).toEqual([2, 3])
    expect(a.evicted).toBe(1)
    expect(b.evicted).toBe(1)
    expect(evictions.reduce((x, y) => x + y, 0)).toBe(2)
  })

  it('is bounded by bytes', () => {
    const { log } = setup({ maxBytes: 10 })
    const s = log.open('s')
    log.append(s, '1234', false)
    log.append(s, '5678', false)
    expect(log.byteSize).toBe(8)
    log.append(s, 'abcd', false)
    expect(log.byteSize).toBe(8)
    expect(seqs(s.events)).toEqual([2, 3])
    // One event over the whole budget does not stay either.
    log.append(s, 'x'.repeat(11), false)
    expect(log.size).toBe(0)
    expect(log.byteSize).toBe(0)
    expect(s.nextSeq).toBe(5)
  })

  it('makes room for an event before it is appended, as the append would', () => {
    const { log, evictions } = setup({ maxEvents: 3, maxBytes: 10 })
    const s = log.open('s')
    for (const p of ['12', '34', '56']) log.append(s, p, false)
    log.makeRoom(2)
    expect(seqs(s.events)).toEqual([2, 3])
    expect(evictions).toEqual([1])
    log.append(s, '78', false)
    expect(evictions).toEqual([1])
    // By count one must go; by bytes (6 held, 7 more) a second one too.
    log.makeRoom(7)
    expect(seqs(s.events)).toEqual([4])
    expect(evictions).toEqual([1, 2])
    log.append(s, 'abcdefg', false)
    expect(log.byteSize).toBe(9)
    expect(evictions).toEqual([1, 2])
  })

  it('is bounded by age, on append and when evict() runs', () => {
    const { log, setNow } = setup({ maxAgeMs: 100 })
    const s = log.open('s')
    setNow(0)
    log.append(s, 'old', false)
    setNow(50)
    log.append(s, 'mid', false)
    setNow(100)
    log.evict()
    expect(seqs(s.events)).toEqual([1, 2])
    setNow(101)
    log.evict()
    expect(seqs(s.events)).toEqual([2])
    setNow(200)
    log.append(s, 'new', false)
    expect(seqs(s.events)).toEqual([3])
    setNow(1000)
    log.evict()
    expect(log.size).toBe(0)
  })

  it('keeps everything within the limits', () => {
    const { log, evictions } = setup({ maxEvents: 3, maxBytes: 3, maxAgeMs: 10 })
    const s = log.open('s')
    for (const p of ['a', 'b', 'c']) log.append(s, p, false)
    log.evict()
    expect(log.size).toBe(3)
    expect(evictions).toEqual([])
  })

  it('stays correct over many evictions', () => {
    const { log } = setup({ maxEvents: 10 })
    const a = log.open('a')
    const b = log.open('b')
    for (let i = 1; i <= 5000; i++) log.append(i % 3 === 0 ? b : a, String(i), false)
    expect(log.size).toBe(10)
    expect(log.byteSize).toBe(40)
    expect(a.events.length + b.events.length).toBe(10)
    expect(a.evicted + a.events.length).toBe(a.nextSeq - 1)
    expect(b.evicted + b.events.length).toBe(b.nextSeq - 1)
    const { events, missed } = a.after(0)
    expect(missed).toBe(a.evicted)
    expect(events).toEqual(a.events)
  })
})

describe('LoggedStream.after', () => {
  const filled = (count: number, maxEvents = 1e9) => {
    const { log } = setup({ maxEvents })
    const s = log.open('s')
    for (let i = 1; i <= count; i++) log.append(s, `e${i}`, false)
    return { log, s }
  }

  it('returns the events after a cursor with nothing missed when nothing was evicted', () => {
    const { s } = filled(5)
    expect(s.after(0)).toEqual({ events: s.events, missed: 0 })
    expect(seqs(s.after(2).events)).toEqual([3, 4, 5])
    expect(s.after(2).missed).toBe(0)
    expect(s.after(5)).toEqual({ events: [], missed: 0 })
    expect(s.after(99)).toEqual({ events: [], missed: 0 })
  })

  it('reports evicted events after the cursor as missed', () => {
    // Events 1..3 evicted, 4 and 5 held.
    const { s } = filled(5, 2)
    expect(s.firstSeq).toBe(4)
    expect(s.after(0)).toMatchObject({ missed: 3 })
    expect(seqs(s.after(0).events)).toEqual([4, 5])
    expect(s.after(1)).toMatchObject({ missed: 2 })
    expect(s.after(2)).toMatchObject({ missed: 1 })
    expect(s.after(3)).toMatchObject({ missed: 0 })
    expect(seqs(s.after(3).events)).toEqual([4, 5])
    expect(seqs(s.after(4).events)).toEqual([5])
  })

  it('counts a fully evicted live stream up to its next sequence number', () => {
    const { log } = setup({ maxEvents: 1 })
    const t = log.open('t')
    log.append(t, 'a', false)
    log.append(t, 'b', false)
    log.append(log.open('u'), 'c', false)
    expect(t.events).toEqual([])
    expect(t.firstSeq).toBe(3)
    expect(t.after(0)).toEqual({ events: [], missed: 2 })
    expect(t.after(1)).toEqual({ events: [], missed: 1 })
    expect(t.after(2)).toEqual({ events: [], missed: 0 })
    expect(log.stream('t')).toBe(t)
  })
})

describe('forgetting streams', () => {
  it('forgets a complete stream once its last event is evicted', () => {
    const { log } = setup({ maxEvents: 2 })
    const done = log.open('done')
    log.append(done, 'progress', false)
    log.append(done, 'response', true)
    done.complete = true
    const other = log.open('other')
    log.append(other, 'x', false)
    expect(log.stream('done')).toBe(done)
    log.append(other, 'y', false)
    expect(log.stream('done')).toBeUndefined()
    expect(log.streamCount).toBe(1)
    // A new stream under that key starts over.
    expect(log.open('done')).not.toBe(done)
  })

  it('keeps a stream that is not complete, so its numbering goes on', () => {
    const { log } = setup({ maxEvents: 1 })
    const live = log.open('live')
    log.append(live, 'a', false)
    log.append(log.open('other'), 'b', false)
    expect(log.stream('live')).toBe(live)
    expect(log.append(live, 'c', false).seq).toBe(2)
  })

  it('keeps a complete stream while a channel listens to it', () => {
    const { log } = setup({ maxEvents: 1 })
    const s = log.open('s')
    log.append(s, 'response', true)
    s.complete = true
    s.listener = { peer: { id: 1 }, ch: 1 }
    log.append(log.open('other'), 'x', false)
    expect(log.stream('s')).toBe(s)
  })
})
