/**
 * @module test/scale/chaos
 *
 * Chaos on three `ferry serve` replicas behind a round-robin proxy (issue #4). Sessions live in
 * their sidecars and the bridge is stateless, so:
 *
 * - (a) SIGKILL of the replica carrying a long streaming call part-way: the client resumes on
 *   another replica with `Last-Event-ID` and gets every remaining message exactly once, in order
 *   (resume latency — kill to first event on the resumed stream — printed as p50/p99);
 * - (b) a rolling restart (SIGTERM, wait, start again, one replica after the other) under a
 *   steady load of short calls and one long progress stream per session loses no session and no
 *   message, and duplicates none (counts and drain times printed);
 * - (c) key rotation under load: add key B → roll → make B primary → roll (new sessions on B, old
 *   ones still work) → drop A → roll (old sessions 404, new ones work);
 * - (d) the official conformance suite passes through the round-robin proxy.
 *
 * Everything runs on 127.0.0.1; every process the test starts is gone afterwards.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runFerry } from '../helpers/bridge.ts'
import { type JsonRpcMessage, type RawSession, openRawSession, textOf } from '../helpers/mcp.ts'
import { percentile } from '../helpers/kubernetes.ts'
import {
  type ReplicaExit,
  type ReplicaSet,
  editKeyringFile,
  startReplicaSet,
} from '../helpers/replicas.ts'
import {
  type CallStats,
  SessionLostError,
  callWithRetry,
  checkProgressStream,
  newCallStats,
  streamCall,
} from './raw-client.ts'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

let nextId = 1
const progressCall = (count: number, intervalMs: number, token: string): JsonRpcMessage => ({
  jsonrpc: '2.0',
  id: nextId++,
  method: 'tools/call',
  params: {
    name: 'ferry_progress',
    arguments: { count, intervalMs },
    _meta: { progressToken: token },
  },
})

const echo = (session: RawSession, text: string, stats: CallStats) =>
  callWithRetry(session, 'tools/call', { name: 'ferry_echo', arguments: { text } }, stats)

const fmt = (ms: number) => `${ms.toFixed(1)} ms`

/** Why short calls had to be retried, if they had to. */
const retryNote = (stats: CallStats[]) => {
  const reasons = stats.flatMap((s) => s.retryReasons)
  return reasons.length ? `; retried because: ${reasons.join(' | ')}` : ''
}

describe('chaos on three replicas behind a round-robin proxy', () => {
  let set: ReplicaSet

  beforeAll(async () => {
    set = await startReplicaSet({ replicas: 3, bridge: { shutdownGrace: '3s' } })
  })
  afterAll(async () => {
    if (!set) return
    expect(await set.close(), 'processes left behind').toEqual([])
  })

  it('(a) resumes a stream cut by SIGKILL on another replica: every message once, in order', async () => {
    const KILLS = 10
    const COUNT = 200
    const session = await openRawSession(set.url())
    const latencies: number[] = []
    const firstEntry = set.proxy.log.length
    for (let round = 0; round < KILLS; round++) {
      await set.ensureRunning()
      // Somewhere in the middle of the stream, a different point every round.
      const killAt = 40 + ((round * 37) % 120)
      let kill: Promise<ReplicaExit> | undefined
      let victim = -1
      const call = await streamCall(session, progressCall(COUNT, 5, `kill-${round}`), {
        onEvent: (event, { connections }) => {
          if (kill || event.message.params?.progress !== killAt) return
          victim = connections[0]!.upstream
          kill = set.kill(victim)
        },
      })
      expect(kill, `round ${round}: the kill point was never reached`).toBeDefined()
      const exit = await kill!
      expect(exit.signal).toBe('SIGKILL')

      const check = checkProgressStream(call, COUNT)
      expect(check.missing, `round ${round}: missing progress`).toEqual([])
      expect(check.duplicated, `round ${round}: duplicated progress`).toEqual([])
      expect(check.inOrder).toBe(true)
      expect(check.seqsContiguous, `round ${round}: event ids not contiguous`).toBe(true)
      expect(check.responses).toBe(1)
      expect(call.response.result?.content).toEqual([{ type: 'text', text: `done ${COUNT}` }])
      // One stream throughout: the resumed events carry on the POST stream's ids.
      expect(new Set(call.events.map((event) => event.stream)).size).toBe(1)

      const [first, ...resumes] = call.connections
      expect(first!.upstream).toBe(victim)
      expect(first!.ending).not.toBe('complete')
      const resumed = resumes.find((connection) => connection.firstEventAt !== undefined)!
      expect(resumed, `round ${round}: no resumed stream carried events`).toBeDefined()
      expect(resumed.upstream).not.toBe(victim)
      expect(resumed.upstream).toBeGreaterThanOrEqual(0)
      latencies.push(resumed.firstEventAt! - exit.signalledAt)
    }
    console.log(
      `[chaos a] ${KILLS} SIGKILLs mid-stream (${COUNT} progress events at 5 ms): resume latency ` +
        `(kill → first event on the resumed stream) p50 ${fmt(percentile(latencies, 50))}, ` +
        `p99 ${fmt(percentile(latencies, 99))}, max ${fmt(Math.max(...latencies))}; ` +
        `messages lost 0, duplicated 0; resumes the proxy first sent to the dead replica ` +
        `(refused, retried on the next): ${
          set.proxy.log.slice(firstEntry).filter((entry) => entry.refused.length > 0).length
        }`
    )
    const still = await session.request('tools/call', {
      name: 'ferry_echo',
      arguments: { text: 'ok' },
    })
    expect(textOf(still.result)).toBe('ok')
    await session.close()
  }, 120_000)

  it('(b) survives a rolling restart under load: no session or message lost or duplicated', async () => {
    await set.ensureRunning()
    const SESSIONS = 8
    // Long enough to outlast the whole roll, so every stream is cut at least once.
    const COUNT = 800
    const INTERVAL = 20
    const sessions = await Promise.all(
      Array.from({ length: SESSIONS }, () => openRawSession(set.url()))
    )
    const stats = sessions.map(() => newCallStats())
    const echoed = sessions.map(() => new Map<string, number>())
    let loading = true
    const loads = sessions.map(async (session, i) => {
      let n = 0
      while (loading) {
        const text = `s${i}-${n++}`
        const answer = await echo(session, text, stats[i]!)
        const got = textOf(answer.result)
        echoed[i]!.set(got, (echoed[i]!.get(got) ?? 0) + 1)
        if (got !== text) stats[i]!.wrong++
        await sleep(10)
      }
      return n
    })
    const streams = sessions.map((session, i) =>
      streamCall(session, progressCall(COUNT, INTERVAL, `roll-${i}`), { timeoutMs: 90_000 })
    )
    await sleep(500)
    const firstEntry = set.proxy.log.length
    const exits = await set.roll({ pauseMs: 500 })
    const calls = await Promise.allSettled(streams)
    loading = false
    const sent = await Promise.allSettled(loads)

    const lostSessions = [...calls, ...sent].filter(
      (outcome) => outcome.status === 'rejected' && outcome.reason instanceof SessionLostError
    ).length
    const failures = [...calls, ...sent].flatMap((outcome) =>
      outcome.status === 'rejected' ? [String(outcome.reason)] : []
    )
    let progressReceived = 0
    let progressMissing = 0
    let progressDuplicated = 0
    let resumes = 0
    let outOfOrder = 0
    for (const outcome of calls) {
      if (outcome.status !== 'fulfilled') continue
      const check = checkProgressStream(outcome.value, COUNT)
      progressReceived += check.progress.length
      progressMissing += check.missing.length
      progressDuplicated += check.duplicated.length
      if (!check.inOrder || !check.seqsContiguous || check.responses !== 1) outOfOrder++
      resumes += outcome.value.connections.length - 1
      expect(outcome.value.response.result?.content).toEqual([
        { type: 'text', text: `done ${COUNT}` },
      ])
    }
    const echoCalls = sent.reduce((sum, o) => sum + (o.status === 'fulfilled' ? o.value : 0), 0)
    const echoOk = stats.reduce((sum, s) => sum + s.ok, 0)
    const echoRetried = stats.reduce((sum, s) => sum + s.retried, 0)
    const echoLost = stats.reduce((sum, s) => sum + s.lost, 0)
    const echoWrong = stats.reduce((sum, s) => sum + s.wrong, 0)
    const echoDuplicated = echoed.reduce(
      (sum, seen) => sum + [...seen.values()].filter((n) => n > 1).length,
      0
    )
    console.log(
      `[chaos b] rolling restart of 3 replicas, ${SESSIONS} sessions: sessions lost ${lostSessions}; ` +
        `progress ${progressReceived}/${SESSIONS * COUNT} received, missing ${progressMissing}, ` +
        `duplicated ${progressDuplicated}, streams out of order ${outOfOrder}, resumes ${resumes}; ` +
        `echo calls ${echoCalls}, answered ${echoOk}, lost ${echoLost}, duplicated ${echoDuplicated}, ` +
        `wrong ${echoWrong}, transport retries ${echoRetried}; ` +
        `proxy retries after a refused connection ${
          set.proxy.log.slice(firstEntry).filter((entry) => entry.refused.length > 0).length
        }; drain (SIGTERM → exit) ` +
        exits.map((exit, i) => `r${i} ${fmt(exit.ms)} (${exit.code ?? exit.signal})`).join(', ') +
        retryNote(stats)
    )
    expect(failures).toEqual([])
    expect(lostSessions).toBe(0)
    expect(progressMissing).toBe(0)
    expect(progressDuplicated).toBe(0)
    expect(outOfOrder).toBe(0)
    expect(progressReceived).toBe(SESSIONS * COUNT)
    expect(echoLost).toBe(0)
    expect(echoDuplicated).toBe(0)
    expect(echoWrong).toBe(0)
    expect(echoOk).toBe(echoCalls)
    // The roll really cut the streams: each was resumed at least once.
    expect(resumes).toBeGreaterThanOrEqual(SESSIONS)
    // A clean drain: exit code 0, within shutdownGrace (3 s) and a little process teardown.
    for (const exit of exits) {
      expect(exit.code).toBe(0)
      expect(exit.ms).toBeLessThan(3000 + 1000)
    }
    // Every session still works, then ends.
    for (const session of sessions) {
      const answer = await session.request('tools/call', {
        name: 'ferry_echo',
        arguments: { text: 'after' },
      })
      expect(textOf(answer.result)).toBe('after')
      expect((await session.close()).status).toBe(200)
    }
  }, 120_000)

  it('(c) rotates the session key under load: add → roll → primary → roll → drop → roll', async () => {
    await set.ensureRunning()
    const kidOf = (session: RawSession) => session.sessionId.split('.')[0]
    /** Echo calls on each session until stopped; resolves with the failures. */
    const load = (sessions: RawSession[], label: string) => {
      const stats = sessions.map(() => newCallStats())
      let running = true
      const loops = sessions.map(async (session, i) => {
        for (let n = 0; running; n++) {
          const text = `${label}${i}-${n}`
          const answer = await echo(session, text, stats[i]!)
          if (textOf(answer.result) !== text) stats[i]!.wrong++
          await sleep(10)
        }
      })
      return {
        stats,
        stop: async () => {
          running = false
          const outcomes = await Promise.allSettled(loops)
          return outcomes.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : []))
        },
      }
    }
    const total = (stats: CallStats[], key: 'ok' | 'retried' | 'notFound' | 'lost') =>
      stats.reduce((sum, s) => sum + s[key], 0)
    const expectNotFoundEverywhere = async (session: RawSession) => {
      for (const replica of set.replicas) {
        const response = await fetch(replica.url(), {
          method: 'POST',
          headers: session.headers(),
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
        })
        expect(response.status, `replica ${replica.index}`).toBe(404)
        await response.body?.cancel()
      }
    }

    // Key A seals (the keyring was created with `key-a` as its primary).
    const old = await Promise.all([1, 2, 3].map(() => openRawSession(set.url())))
    expect(old.map(kidOf)).toEqual(['key-a', 'key-a', 'key-a'])
    const oldLoad = load(old, 'a')

    // 1. Add key B. A is still the primary, so every replica — restarted or not — seals with A.
    const added = await runFerry(['keys', 'new', set.keysFile, '--id', 'key-b'])
    expect(added.code, added.stderr).toBe(0)
    expect(added.stdout).toContain('added key key-b')
    const roll1 = await set.roll()
    const between = await openRawSession(set.url())
    expect(kidOf(between)).toBe('key-a')

    // 2. Make B the primary: new sessions get B; sessions on A keep working.
    editKeyringFile(set.keysFile, (keyring) => {
      keyring.primary = 'key-b'
    })
    const roll2 = await set.roll()
    const fresh = await Promise.all([1, 2, 3].map(() => openRawSession(set.url())))
    expect(fresh.map(kidOf)).toEqual(['key-b', 'key-b', 'key-b'])
    const freshLoad = load(fresh, 'b')
    await sleep(300)
    const oldFailures = await oldLoad.stop()
    expect(oldFailures).toEqual([])
    expect(total(oldLoad.stats, 'notFound')).toBe(0)
    const answer = await echo(between, 'between', newCallStats())
    expect(textOf(answer.result)).toBe('between')

    // 3. Drop A: sessions sealed with it are over (404 everywhere); sessions on B carry on.
    editKeyringFile(set.keysFile, (keyring) => {
      keyring.keys = keyring.keys.filter((key) => key.id !== 'key-a')
    })
    const roll3 = await set.roll()
    const freshFailures = await freshLoad.stop()
    expect(freshFailures).toEqual([])
    expect(total(freshLoad.stats, 'notFound')).toBe(0)
    for (const session of [...old, between]) await expectNotFoundEverywhere(session)
    for (const session of fresh) {
      const still = await echo(session, 'still', newCallStats())
      expect(textOf(still.result)).toBe('still')
    }
    const newer = await openRawSession(set.url())
    expect(kidOf(newer)).toBe('key-b')

    const drains = [roll1, roll2, roll3].map((roll) => roll.map((exit) => fmt(exit.ms)).join('/'))
    console.log(
      `[chaos c] key rotation under load: sessions on A answered ${total(oldLoad.stats, 'ok')} ` +
        `calls until B became primary (404s ${total(oldLoad.stats, 'notFound')}, retries ` +
        `${total(oldLoad.stats, 'retried')}), sessions on B answered ${total(freshLoad.stats, 'ok')} ` +
        `across the drop of A (404s ${total(freshLoad.stats, 'notFound')}, retries ` +
        `${total(freshLoad.stats, 'retried')}); drain times per roll ${drains.join(', ')}` +
        retryNote([...oldLoad.stats, ...freshLoad.stats])
    )
    for (const roll of [roll1, roll2, roll3]) for (const exit of roll) expect(exit.code).toBe(0)
    for (const session of [...fresh, newer]) expect((await session.close()).status).toBe(200)
  }, 120_000)

  it('(c) — why the steps: a key added as primary in one go breaks sessions started mid-roll', async () => {
    await set.ensureRunning()
    // The anti-pattern: `ferry keys new --primary`, then a roll. The first restarted replica
    // seals new sessions with a key the others cannot open yet.
    const added = await runFerry(['keys', 'new', set.keysFile, '--id', 'key-c', '--primary'])
    expect(added.code, added.stderr).toBe(0)
    await set.stop(0, 'SIGTERM')
    await set.restart(0)
    const early = await openRawSession(set.replicas[0]!.url())
    expect(early.sessionId.split('.')[0]).toBe('key-c')
    const call = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} })
    const statusOn = async (index: number) => {
      const response = await fetch(set.replicas[index]!.url(), {
        method: 'POST',
        headers: early.headers(),
        body: call,
      })
      await response.body?.cancel()
      return response.status
    }
    // Not yet rolled: a valid session is "not found" there.
    expect([await statusOn(1), await statusOn(2)]).toEqual([404, 404])
    // Once every replica has the key, the session works everywhere.
    for (const index of [1, 2]) {
      await set.stop(index, 'SIGTERM')
      await set.restart(index)
    }
    expect([await statusOn(0), await statusOn(1), await statusOn(2)]).toEqual([200, 200, 200])
    expect((await early.close()).status).toBe(200)
  }, 60_000)
})

const require = createRequire(import.meta.url)

/** The CLI file of an installed package. */
const cliOf = (pkg: string) => {
  const manifest = require.resolve(`${pkg}/package.json`)
  const { bin } = require(manifest) as { bin: string | Record<string, string> }
  return join(dirname(manifest), typeof bin === 'string' ? bin : Object.values(bin)[0]!)
}

/** Runs a Node CLI to completion (killed after `timeoutMs`); resolves with its exit code and output. */
const runNode = (args: string[], timeoutMs: number) =>
  new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })

interface Check {
  id: string
  status: string
  errorMessage?: string
}

describe('(d) the conformance suite through the round-robin proxy', () => {
  let set: ReplicaSet

  beforeAll(async () => {
    // As in `conformance/run.ts`: SEP-1699 polling so `test_reconnection` resumes its stream.
    set = await startReplicaSet({
      replicas: 3,
      bridge: { sse: { pollAfter: '400ms', retry: 200 } },
      fixture: { env: { FIXTURE_RECONNECT_DELAY_MS: '1500' } },
    })
  })
  afterAll(async () => {
    if (!set) return
    expect(await set.close(), 'processes left behind').toEqual([])
  })

  it('passes every scenario of `--suite all` (0.1.16) with requests spread over the replicas', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ferry-scale-conformance-'))
    // `localhost` (the proxy listens on 127.0.0.1), so the DNS-rebinding scenario checks Host.
    const url = set.proxy.url('/mcp', 'localhost')
    const first = set.proxy.log.length
    const { code, output } = await runNode(
      [
        cliOf('@modelcontextprotocol/conformance'),
        'server',
        '--url',
        url,
        '--suite',
        'all',
        '-o',
        out,
      ],
      150_000
    )
    const scenarios = new Map<string, Check[]>()
    for (const entry of readdirSync(out)) {
      const file = join(out, entry, 'checks.json')
      if (existsSync(file)) scenarios.set(entry, JSON.parse(readFileSync(file, 'utf8')) as Check[])
    }
    const failed = [...scenarios].flatMap(([name, checks]) =>
      checks
        .filter((check) => check.status === 'FAILURE')
        .map((check) => `${name}: ${check.id}: ${check.errorMessage ?? ''}`)
    )
    const entries = set.proxy.log.slice(first)
    const upstreams = new Set(entries.map((entry) => entry.upstream))
    const unanswered = entries.filter((entry) => entry.upstream === -1)
    console.log(
      `[chaos d] conformance 0.1.16 --suite all through the proxy: ${scenarios.size} scenarios, ` +
        `${scenarios.size - new Set(failed.map((f) => f.split(':')[0])).size} passed, ` +
        `${entries.length} requests over replicas ${[...upstreams].filter((u) => u >= 0).sort()}` +
        (unanswered.length
          ? `; unanswered (client gone first): ${unanswered.map((e) => `${e.method} ${e.error}`).join(', ')}`
          : '')
    )
    expect(failed).toEqual([])
    expect(code, output.slice(-4000)).toBe(0)
    expect(scenarios.size).toBeGreaterThanOrEqual(30)
    // Answered by every replica (a request the client gave up on before any answer has none).
    upstreams.delete(-1)
    expect(upstreams).toEqual(new Set([0, 1, 2]))
  }, 180_000)
})
