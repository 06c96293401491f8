import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { silentLogger } from '@ferry/shared'
import { runSidecar, type SidecarOptions } from './sidecar.ts'
import { TEST_SETTINGS, liveProcessesWith, waitUntil } from './test-support.ts'

const HAS_PROC = existsSync('/proc/self/stat')

/** A "server" that ignores SIGTERM and stdin EOF (only SIGKILL ends it), then says `ready` on stderr. */
const STUBBORN_SERVER =
  'process.on("SIGTERM",()=>{});process.stdin.resume();setInterval(()=>{},1000);console.error("ready")'

const blockers: Server[] = []
const markers: string[] = []
afterEach(() => {
  for (const blocker of blockers.splice(0)) blocker.close()
  // Whatever a failed test left running.
  for (const marker of markers.splice(0)) {
    if (HAS_PROC) for (const pid of liveProcessesWith(marker)) process.kill(pid, 'SIGKILL')
  }
})

const newMarker = () => {
  const marker = `ferry-test-${randomBytes(6).toString('hex')}`
  markers.push(marker)
  return marker
}

const options = (marker: string, overrides: Partial<SidecarOptions> = {}): SidecarOptions => ({
  command: process.execPath,
  args: ['-e', `${STUBBORN_SERVER}//${marker}`],
  env: { PATH: process.env.PATH },
  sessionName: 's',
  verifier: 'c2VjcmV0',
  host: '127.0.0.1',
  port: 0,
  ...TEST_SETTINGS,
  logger: silentLogger,
  ...overrides,
})

describe('runSidecar', () => {
  it('stops the server it started when it cannot listen', async () => {
    const blocker = createServer()
    blockers.push(blocker)
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    const marker = newMarker()
    const exitListeners = process.listenerCount('exit')
    await expect(runSidecar(options(marker, { port }))).rejects.toThrow(/EADDRINUSE/)
    if (HAS_PROC) expect(liveProcessesWith(marker)).toEqual([])
    expect(process.listenerCount('exit')).toBe(exitListeners)
  })

  it('stops the server and resolves done with 0 when Ferry ends the session', async () => {
    const marker = newMarker()
    const exitListeners = process.listenerCount('exit')
    const sidecar = await runSidecar(options(marker))
    expect(sidecar.port).toBeGreaterThan(0)
    if (HAS_PROC) expect(liveProcessesWith(marker)).toHaveLength(1)
    expect(process.listenerCount('exit')).toBe(exitListeners + 1)
    sidecar.stop('deleted')
    expect(await sidecar.done).toBe(0)
    if (HAS_PROC) expect(liveProcessesWith(marker)).toEqual([])
    await waitUntil(() => process.listenerCount('exit') === exitListeners, 'the exit hook to go')
  })
})
