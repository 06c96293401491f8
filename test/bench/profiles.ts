/**
 * The bench's profile phase: Ferry and the two-hop floor on Hono serve the same sequential
 * `tools/call echo` calls with every process under `node --cpu-prof`; the profiles of the
 * bridges, Ferry's sidecar host and the floor's relay become flame graphs (flame-graph.ts) in
 * `docs/profiles/`, so where Ferry's time goes next to the floor's can be seen, not told.
 */
import { readFileSync, readdirSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { starters } from './contenders.ts'
import { ECHO_MESSAGE } from './measure.ts'
import { type CpuProfile, renderFlameGraph } from './flame-graph.ts'

/** Which processes get a graph: a pattern on the command line, the file and its title. */
const GRAPHS = {
  ferry: [
    { match: /bridge\/dist\/bin\.js/, file: 'ferry-bridge.svg', title: "Ferry's bridge" },
    {
      match: /sidecar\.mjs host/,
      file: 'ferry-sidecar.svg',
      // The sidecar ships as one bundle, so the libraries in it count as Ferry's here.
      title: "Ferry's sidecar host (the local sessions' sidecars; one bundle, ws included)",
    },
  ],
  'hono-floor': [
    {
      match: /floor-bridge\.ts/,
      file: 'hono-floor-bridge.svg',
      title: 'The two-hop floor on Hono: its bridge',
    },
    { match: /floor-relay\.ts/, file: 'floor-relay.svg', title: 'The two-hop floor: its relay' },
  ],
} as const

const commandLine = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
  } catch {
    return ''
  }
}

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export interface ProfileGraph {
  file: string
  title: string
  /** Busy microseconds per call while the calls ran. */
  busyUsPerCall: number
}

/** Profiles each contender over `calls` calls and writes the graphs to `outDir`. */
export const runProfiles = async (calls: number, outDir: string): Promise<ProfileGraph[]> => {
  mkdirSync(outDir, { recursive: true })
  const written: ProfileGraph[] = []
  for (const [name, graphs] of Object.entries(GRAPHS)) {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-profile-'))
    // Children inherit the environment when they are spawned: the bridge, and through it the
    // sidecar host, start profiled. This process does not (NODE_OPTIONS is read at start-up).
    const saved = process.env.NODE_OPTIONS
    process.env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${dir} --cpu-prof-interval=250`
    const contender = await starters[name]!().finally(() => {
      if (saved === undefined) delete process.env.NODE_OPTIONS
      else process.env.NODE_OPTIONS = saved
    })
    try {
      const session = contender.session()
      await session.open()
      for (let i = 0; i < 500; i++) await session.echo(ECHO_MESSAGE)
      const now = () => Number(process.hrtime.bigint() / 1000n)
      const startUs = now()
      for (let i = 0; i < calls; i++) await session.echo(ECHO_MESSAGE)
      const window = { startUs, endUs: now() }
      await session.close()
      const pids = contender.pids()
      const wanted = graphs.map((graph) => ({
        graph,
        pid: pids.find((pid) => graph.match.test(commandLine(pid))),
      }))
      // A profile is written when its process exits on its own: SIGTERM each profiled process
      // (each exits through process.exit), then wait a bounded time; stop() kills the rest.
      const profiled = wanted.flatMap(({ pid }) => (pid === undefined ? [] : [pid]))
      for (const pid of profiled) process.kill(pid, 'SIGTERM')
      for (let waited = 0; waited < 15_000 && profiled.some(isRunning); waited += 100) {
        await sleep(100)
      }
      for (const { graph, pid } of wanted) {
        const profile = readdirSync(dir).find((f) => pid !== undefined && f.includes(`.${pid}.`))
        if (!profile) throw new Error(`no profile of ${graph.title} (pid ${pid})`)
        const data = JSON.parse(readFileSync(join(dir, profile), 'utf8')) as CpuProfile
        const { svg, busyUs } = renderFlameGraph(data, { title: graph.title, calls, window })
        writeFileSync(join(outDir, graph.file), svg)
        written.push({ file: graph.file, title: graph.title, busyUsPerCall: busyUs / calls })
      }
    } finally {
      await contender.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  return written
}
