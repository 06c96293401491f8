/** The benchmark measurements: all but memory across contenders at once, taken in turns. */
import type { Contender, BenchSession } from './contenders.ts'
import { memoryOf } from './memory.ts'
import { type LatencySummary, summarize } from './stats.ts'

/** What every `tools/call echo` of the bench sends. */
export const ECHO_MESSAGE = 'hello from ferry-bench'

const openSessions = async (contender: Contender, count: number, parallel: number) => {
  const sessions: BenchSession[] = []
  const startLatencies: number[] = []
  const started = performance.now()
  for (let i = 0; i < count; i += parallel) {
    await Promise.all(
      Array.from({ length: Math.min(parallel, count - i) }, async () => {
        const session = contender.session()
        const t0 = performance.now()
        await session.open()
        await session.call('tools/list')
        startLatencies.push(performance.now() - t0)
        sessions.push(session)
      })
    )
  }
  return { sessions, startLatencies, wallMs: performance.now() - started }
}

const closeAll = (sessions: BenchSession[]) => Promise.all(sessions.map((s) => s.close()))

/**
 * One session per contender, sequential `tools/call echo` (summaries in the contenders' order):
 * `calls` per contender, taken in `blocks` turns that go round the contenders, so that a slow
 * spell of the machine (another tenant, CPU frequency) falls on all of them alike instead of on
 * whichever ran then.
 */
export const latency = async (
  contenders: Contender[],
  calls: number,
  warmup: number,
  blocks: number
): Promise<LatencySummary[]> => {
  const sessions = contenders.map((contender) => contender.session())
  const samples = contenders.map((): number[] => [])
  try {
    for (const session of sessions) {
      await session.open()
      for (let i = 0; i < warmup; i++) await session.echo(ECHO_MESSAGE)
    }
    for (let block = 0; block < blocks; block++) {
      for (const [i, session] of sessions.entries()) {
        for (let call = 0; call < calls / blocks; call++) {
          const t0 = performance.now()
          await session.echo(ECHO_MESSAGE)
          samples[i]!.push(performance.now() - t0)
        }
      }
    }
  } finally {
    await closeAll(sessions)
  }
  return samples.map(summarize)
}

export interface Throughput {
  rps: number
  latency: LatencySummary
  /** The client's CPU use over the run, as a share of one core. */
  clientCpu: number
}

/**
 * `sessionCount` sessions per contender with `inFlight` requests outstanding at all times, for
 * `durationMs` per contender in all (results in the contenders' order). The time is taken in
 * `windows` turns that go round the contenders, as {@link latency} takes its blocks, so a slow
 * spell of the machine falls on all of them alike instead of on whichever ran then.
 */
export const throughput = async (
  contenders: Contender[],
  sessionCount: number,
  inFlight: number,
  durationMs: number,
  windows: number
): Promise<Throughput[]> => {
  const opened: BenchSession[][] = []
  try {
    for (const contender of contenders) {
      const { sessions } = await openSessions(contender, sessionCount, sessionCount)
      opened.push(sessions)
      for (const session of sessions) for (let i = 0; i < 50; i++) await session.echo(ECHO_MESSAGE)
    }
    const totals = contenders.map(() => ({ samples: [] as number[], elapsedMs: 0, cpuMs: 0 }))
    for (let window = 0; window < windows; window++) {
      for (const [i, sessions] of opened.entries()) {
        const total = totals[i]!
        const cpu0 = process.cpuUsage()
        const t0 = performance.now()
        const deadline = t0 + durationMs / windows
        await Promise.all(
          Array.from({ length: inFlight }, async (_, worker) => {
            const session = sessions[worker % sessions.length]!
            while (performance.now() < deadline) {
              const start = performance.now()
              await session.echo(ECHO_MESSAGE)
              total.samples.push(performance.now() - start)
            }
          })
        )
        total.elapsedMs += performance.now() - t0
        const cpu = process.cpuUsage(cpu0)
        total.cpuMs += (cpu.user + cpu.system) / 1000
      }
    }
    return totals.map(({ samples, elapsedMs, cpuMs }) => ({
      rps: (samples.length / elapsedMs) * 1000,
      latency: summarize(samples),
      clientCpu: cpuMs / elapsedMs,
    }))
  } finally {
    await Promise.all(opened.map(closeAll))
  }
}

export interface SessionStart {
  perSecond: number
  latency: LatencySummary
}

/**
 * `count` sessions per contender created `parallel` at a time, initialize → first tools/list
 * (results in the contenders' order). The batches go round the contenders in turn, as
 * {@link latency} takes its blocks; each contender's rate counts its own batches' time only.
 */
export const sessionStart = async (
  contenders: Contender[],
  count: number,
  parallel: number
): Promise<SessionStart[]> => {
  const opened = contenders.map(() => ({
    sessions: [] as BenchSession[],
    latencies: [] as number[],
    wallMs: 0,
  }))
  try {
    for (let i = 0; i < count; i += parallel) {
      for (const [j, contender] of contenders.entries()) {
        const batch = await openSessions(contender, Math.min(parallel, count - i), parallel)
        const into = opened[j]!
        into.sessions.push(...batch.sessions)
        into.latencies.push(...batch.startLatencies)
        into.wallMs += batch.wallMs
      }
    }
  } finally {
    await Promise.all(opened.map(({ sessions }) => closeAll(sessions)))
  }
  return opened.map(({ latencies, wallMs }) => ({
    perSecond: (count / wallMs) * 1000,
    latency: summarize(latencies),
  }))
}

export interface Memory {
  perSessionPss: number
  totalPss: number
  idlePss: number
  processes: number
}

/** PSS of everything the contender runs, with `count` sessions open. */
export const memory = async (contender: Contender, count: number): Promise<Memory> => {
  const idle = memoryOf(contender.pids())
  const { sessions } = await openSessions(contender, count, 5)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const loaded = memoryOf(contender.pids())
  await closeAll(sessions)
  return {
    perSessionPss: loaded.pss / count,
    totalPss: loaded.pss,
    idlePss: idle.pss,
    processes: loaded.processes,
  }
}
