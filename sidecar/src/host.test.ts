import { createHash, randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { FRAME_PROTOCOL, UpgradeHeader, silentLogger } from '@ferry/shared'
import { type HostEvent, type HostedSessionSpec, runSidecarHost } from './host.ts'
import { TEST_SETTINGS, liveProcessesWith, waitUntil } from './test-support.ts'

/** A server that idles until its stdin closes, its command line carrying `marker`. */
const IDLE_SERVER = 'process.stdin.resume();process.stdin.on("end",()=>process.exit(0))'

const markers: string[] = []
afterEach(() => {
  for (const marker of markers.splice(0)) {
    for (const pid of liveProcessesWith(marker)) process.kill(pid, 'SIGKILL')
  }
})

const session = (sessionName: string, secret: string, marker: string): HostedSessionSpec => ({
  sessionName,
  verifier: createHash('sha256').update(secret).digest('base64url'),
  command: process.execPath,
  args: ['-e', `${IDLE_SERVER}//${marker}`],
  env: { PATH: process.env.PATH },
  settings: TEST_SETTINGS,
})

const startHost = async () => {
  const events: HostEvent[] = []
  const host = await runSidecarHost({
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    send: (event) => events.push(event),
  })
  const answer = async (id: number) => {
    await waitUntil(() => events.some((e) => 'id' in e && e.id === id), `an answer to ${id}`)
    return events.find((e) => 'id' in e && e.id === id)!
  }
  return { host, events, answer }
}

/** The HTTP status of an upgrade for `sessionName` with `secret`, or 101 when accepted. */
const upgradeStatus = (port: number, sessionName: string, secret: string) =>
  new Promise<number>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, FRAME_PROTOCOL, {
      headers: {
        [UpgradeHeader.session]: sessionName,
        [UpgradeHeader.authorization]: `Bearer ${secret}`,
      },
    })
    ws.once('open', () => {
      ws.terminate()
      resolve(101)
    })
    ws.once('unexpected-response', (_req, res) => {
      res.resume()
      ws.terminate()
      resolve(res.statusCode ?? 0)
    })
    ws.once('error', () => resolve(0))
  })

const newMarker = () => {
  const marker = `ferry-host-test-${randomBytes(6).toString('hex')}`
  markers.push(marker)
  return marker
}

describe('runSidecarHost', () => {
  it('serves several sessions on one port, each only with its own secret', async () => {
    const { host, answer } = await startHost()
    const marker = newMarker()
    host.handle({ t: 'start', id: 1, spec: session('a', 'secret-a', marker) })
    host.handle({ t: 'start', id: 2, spec: session('b', 'secret-b', marker) })
    expect(await answer(1)).toEqual({ t: 'started', id: 1 })
    expect(await answer(2)).toEqual({ t: 'started', id: 2 })
    expect(liveProcessesWith(marker)).toHaveLength(2)
    expect(await upgradeStatus(host.port, 'a', 'secret-a')).toBe(101)
    expect(await upgradeStatus(host.port, 'b', 'secret-b')).toBe(101)
    expect(await upgradeStatus(host.port, 'b', 'secret-a')).toBe(401)
    expect(await upgradeStatus(host.port, 'c', 'secret-a')).toBe(404)
    host.stop()
    await host.done
    expect(liveProcessesWith(marker)).toEqual([])
  })

  it('refuses a second session of the same name and a server that cannot start', async () => {
    const { host, answer, events } = await startHost()
    const marker = newMarker()
    host.handle({ t: 'start', id: 1, spec: session('a', 's', marker) })
    await answer(1)
    host.handle({ t: 'start', id: 2, spec: session('a', 's', marker) })
    expect(await answer(2)).toEqual({ t: 'failed', id: 2, error: 'session a already runs here' })
    host.handle({
      t: 'start',
      id: 3,
      spec: { ...session('b', 's', marker), command: '/nonexistent/ferry-server' },
    })
    expect(await answer(3)).toMatchObject({ t: 'failed', error: expect.stringMatching(/ENOENT/) })
    expect(liveProcessesWith(marker)).toHaveLength(1)
    host.stop()
    await host.done
    expect(events.filter((e) => e.t === 'ended')).toEqual([
      { t: 'ended', sessionName: 'a', code: 0 },
    ])
  })

  it('ends one session on request and reports it, the others running on', async () => {
    const { host, answer, events } = await startHost()
    const marker = newMarker()
    host.handle({ t: 'start', id: 1, spec: session('a', 's', marker) })
    host.handle({ t: 'start', id: 2, spec: session('b', 's', marker) })
    await answer(1)
    await answer(2)
    host.handle({ t: 'stop', sessionName: 'a' })
    await waitUntil(() => events.some((e) => e.t === 'ended'), 'the end of a')
    expect(events.filter((e) => e.t === 'ended')).toEqual([
      { t: 'ended', sessionName: 'a', code: 0 },
    ])
    expect(await upgradeStatus(host.port, 'a', 's')).toBe(404)
    expect(await upgradeStatus(host.port, 'b', 's')).toBe(101)
    host.stop()
    await host.done
  })

  it('once released, takes no new session and finishes after its last one ends', async () => {
    const { host, answer } = await startHost()
    const marker = newMarker()
    host.handle({ t: 'start', id: 1, spec: session('a', 's', marker) })
    await answer(1)
    host.release()
    host.handle({ t: 'start', id: 2, spec: session('b', 's', marker) })
    expect(await answer(2)).toEqual({
      t: 'failed',
      id: 2,
      error: 'the sidecar host is shutting down',
    })
    let finished = false
    void host.done.then(() => (finished = true))
    // Still serving its session.
    expect(await upgradeStatus(host.port, 'a', 's')).toBe(101)
    expect(finished).toBe(false)
    host.handle({ t: 'stop', sessionName: 'a' })
    await host.done
    expect(liveProcessesWith(marker)).toEqual([])
  })

  it('finishes at once when released with no session', async () => {
    const { host } = await startHost()
    host.release()
    await host.done
  })
})
