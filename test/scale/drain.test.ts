/**
 * @module test/scale/drain
 *
 * Draining a replica on SIGTERM (issue #4), with three `ferry serve` processes behind a
 * round-robin proxy that probes `/readyz` like an ingress. While the replica drains:
 *
 * - `/readyz` answers 503, so load balancers move on;
 * - a short request already in flight completes normally;
 * - its open SSE streams (a long call's POST stream and the standalone GET stream) get a
 *   `retry:` hint and end cleanly, so clients resume elsewhere;
 * - the client resumes the call on another replica with `Last-Event-ID` without losing or
 *   repeating a message;
 * - the process exits with code 0 within `bridge.shutdownGrace`, and sessions are untouched.
 */
import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type JsonRpcMessage,
  type SseEvent,
  openRawSession,
  post,
  sseEvents,
  textOf,
} from '../helpers/mcp.ts'
import { type ReplicaExit, type ReplicaSet, startReplicaSet } from '../helpers/replicas.ts'
import { checkProgressStream, streamCall } from './raw-client.ts'

const GRACE_MS = 3000
/** Process teardown after the grace (closing pools, flushing logs, exiting). */
const EXIT_SLACK_MS = 500

let set: ReplicaSet

beforeAll(async () => {
  set = await startReplicaSet({ replicas: 3, bridge: { shutdownGrace: `${GRACE_MS}ms` } })
})
afterAll(async () => {
  if (!set) return
  expect(await set.close(), 'processes left behind').toEqual([])
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** `a a a b` → `a ×3, b`: probe results in short. */
const runs = (values: unknown[]): string => {
  const out: string[] = []
  for (let i = 0; i < values.length;) {
    let j = i
    while (j < values.length && values[j] === values[i]) j++
    out.push(j - i > 1 ? `${String(values[i])} ×${j - i}` : String(values[i]))
    i = j
  }
  return out.join(', ')
}

/** What a client reading one SSE response saw. */
interface WatchedStream {
  events: (SseEvent & { at: number })[]
  /** `end`: the body ended cleanly; `error`: it broke off. */
  ending?: 'end' | 'error'
  endedAt?: number
  done: Promise<void>
}

const watch = (response: Response): WatchedStream => {
  const watched: WatchedStream = { events: [], done: Promise.resolve() }
  watched.done = (async () => {
    try {
      for await (const event of sseEvents(response.body!))
        watched.events.push({ ...event, at: performance.now() })
      watched.ending = 'end'
    } catch {
      watched.ending = 'error'
    }
    watched.endedAt = performance.now()
  })()
  return watched
}

/** `GET /readyz` on a fresh connection, as a kubelet probes: the status, or the error code. */
const readyz = (port: number): Promise<number | string> =>
  new Promise((resolve) => {
    const probe = httpRequest(
      { host: '127.0.0.1', port, path: '/readyz', agent: false, timeout: 2000 },
      (answer) => {
        answer.resume()
        resolve(answer.statusCode ?? 0)
      }
    )
    probe.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    probe.on('timeout', () => probe.destroy(new Error('timeout')))
    probe.end()
  })

describe('draining a replica on SIGTERM', () => {
  it('fails /readyz, finishes short requests, ends SSE with retry:, and the client resumes elsewhere', async () => {
    // Longer than the grace, so only a drain that ends the stream lets the process exit in time.
    const COUNT = 600
    const session = await openRawSession(set.url())
    const victim = set.replicas[0]!
    const directHeaders = session.headers()

    // The standalone GET stream, held by the replica about to drain.
    const standalone = watch(
      await fetch(victim.url(), {
        headers: {
          accept: 'text/event-stream',
          'mcp-session-id': session.sessionId,
          'mcp-protocol-version': session.protocolVersion,
        },
      })
    )

    let signalled: ReplicaExit | undefined
    let exit: Promise<ReplicaExit> | undefined
    let shortCall: Promise<Response> | undefined
    const probes: { at: number; status: number | string }[] = []
    let probing: Promise<void> | undefined
    const drain = async () => {
      // A short call in flight on the replica when the signal arrives.
      shortCall = post(
        victim.url(),
        {
          jsonrpc: '2.0',
          id: 'short',
          method: 'tools/call',
          params: { name: 'ferry_sleep', arguments: { ms: 800 } },
        },
        directHeaders
      )
      await sleep(100)
      exit = set.stop(victim.index, 'SIGTERM', 20_000)
      void exit.then((value) => (signalled = value))
      // Probe readiness on fresh connections until the process is gone.
      probing = (async () => {
        while (!signalled) {
          probes.push({ at: performance.now(), status: await readyz(victim.port) })
          await sleep(25)
        }
      })()
    }

    const call = await streamCall(
      session,
      {
        jsonrpc: '2.0',
        id: 'long',
        method: 'tools/call',
        params: {
          name: 'ferry_progress',
          arguments: { count: COUNT, intervalMs: 10 },
          _meta: { progressToken: 'drain' },
        },
      },
      {
        // Started on the draining replica itself; resumed through the proxy.
        send: (request, signal) => post(victim.url(), request, directHeaders, signal),
        onEvent: (event) => {
          if (event.message.params?.progress === 20) void drain()
        },
        timeoutMs: 60_000,
      }
    )
    expect(exit, 'the drain never started').toBeDefined()
    const exited = await exit!
    await probing
    const signalAt = exited.signalledAt
    const exitAt = signalAt + exited.ms

    // /readyz failed with 503 while the replica drained (and never went back to 200).
    const during = probes.filter((probe) => probe.at >= signalAt)
    await Promise.race([standalone.done, sleep(GRACE_MS)])
    console.log(
      `[drain] SIGTERM → exit ${exited.ms.toFixed(0)} ms (shutdownGrace ${GRACE_MS} ms); ` +
        `readyz after SIGTERM: ${runs(during.map((probe) => probe.status))}; ` +
        `POST stream ended ${((call.connections[0]!.endedAt ?? NaN) - signalAt).toFixed(0)} ms after SIGTERM ` +
        `(${call.connections[0]!.ending}), standalone ${((standalone.endedAt ?? NaN) - signalAt).toFixed(0)} ms ` +
        `(${standalone.ending}); resumed ${call.connections.length - 1}×`
    )

    const firstUnready = during.findIndex((probe) => probe.status !== 200)
    expect
      .soft(
        during.map((probe) => probe.status),
        '/readyz answers 503 during the drain'
      )
      .toContain(503)
    expect(during.slice(firstUnready).some((probe) => probe.status === 200)).toBe(false)

    // The short call that was in flight completed normally.
    const short = await shortCall!
    expect(short.status).toBe(200)
    const shortAnswer = (await short.json()) as JsonRpcMessage
    expect(shortAnswer.id).toBe('short')
    expect(textOf(shortAnswer.result)).toBe('slept 800')

    // The long call's stream on the draining replica got a retry hint and ended cleanly, before
    // the process exited; the client resumed on another replica.
    const [onVictim, ...resumed] = call.connections
    expect(onVictim!.upstream).toBe(-1) // sent directly, not through the proxy
    expect
      .soft(
        onVictim!.retries.filter((retry) => retry.at >= signalAt),
        'retry: hint on the POST stream after SIGTERM'
      )
      .not.toEqual([])
    expect.soft(onVictim!.ending, 'the POST stream ended cleanly').toBe('end')
    expect(onVictim!.endedAt!).toBeLessThanOrEqual(exitAt)
    expect(resumed.length).toBeGreaterThanOrEqual(1)
    expect(call.connections.at(-1)!.upstream, 'the call finished on another replica').not.toBe(0)

    // Nothing lost, nothing repeated, in order.
    const check = checkProgressStream(call, COUNT)
    expect(check.missing).toEqual([])
    expect(check.duplicated).toEqual([])
    expect(check.inOrder).toBe(true)
    expect(check.seqsContiguous).toBe(true)
    expect(check.responses).toBe(1)
    expect(call.response.result?.content).toEqual([{ type: 'text', text: `done ${COUNT}` }])

    // The standalone stream got a retry hint after SIGTERM and ended cleanly too.
    await standalone.done
    expect
      .soft(
        standalone.events.filter((event) => event.retry !== undefined && event.at >= signalAt),
        'retry: hint on the standalone stream after SIGTERM'
      )
      .not.toEqual([])
    expect.soft(standalone.ending, 'the standalone stream ended cleanly').toBe('end')
    expect(standalone.endedAt!).toBeLessThanOrEqual(exitAt)

    // The process exited cleanly within the configured grace.
    expect({ code: exited.code, signal: exited.signal }).toEqual({ code: 0, signal: null })
    expect.soft(exited.ms, 'SIGTERM → exit (ms)').toBeLessThan(GRACE_MS + EXIT_SLACK_MS)

    // The session is untouched: it answers through the proxy, and its standalone stream can be
    // opened again elsewhere and receives what the server sends.
    await set.restart(victim.index)
    const again = await session.request('tools/call', {
      name: 'ferry_echo',
      arguments: { text: 'after the drain' },
    })
    expect(textOf(again.result)).toBe('after the drain')
    const reopened = await fetch(set.url(), {
      headers: {
        accept: 'text/event-stream',
        'mcp-session-id': session.sessionId,
        'mcp-protocol-version': session.protocolVersion,
      },
    })
    expect(reopened.status).toBe(200)
    const notified = watch(reopened)
    await session.request('tools/call', { name: 'ferry_notify_later', arguments: { delayMs: 50 } })
    const deadline = Date.now() + 10_000
    while (
      !notified.events.some((event) => event.data.includes('notifications/tools/list_changed'))
    ) {
      expect(Date.now() < deadline, 'no notification on the reopened stream').toBe(true)
      await sleep(25)
    }
    await reopened.body?.cancel().catch(() => undefined)
    expect((await session.close()).status).toBe(200)
  }, 90_000)

  it('exits promptly when idle, with code 0', async () => {
    await set.ensureRunning()
    const exit = await set.stop(1, 'SIGTERM', 20_000)
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null })
    expect(exit.ms).toBeLessThan(GRACE_MS)
    await set.restart(1)
  })
})
