/**
 * `npm run bench`: Ferry against supergateway 4.0.0 `--stateful` and direct stdio,
 * all fronting the same server-everything stdio server, interleaved round by
 * round so ratios hold on a noisy machine. Writes `docs/benchmarks.md`,
 * `docs/benchmarks.svg` and flame graphs in `docs/profiles/`. Loopback only; every phase
 * is bounded.
 *
 * Options: `--rounds N` (default 3), `--quick` (short phases, for a smoke run),
 * `--no-write` (print only).
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { starters, type Contender } from './contenders.ts'
import { latency, memory, sessionStart, throughput } from './measure.ts'
import { renderReport, type Results } from './report.ts'
import { runKubernetesStart } from './kubernetes-start.ts'
import { runScale } from './scale.ts'
import { runProfiles } from './profiles.ts'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
  },
})
const rounds = Number(values.rounds)
const quick = values.quick
const plan = {
  latencyCalls: quick ? 500 : 2000,
  latencyBlocks: 10,
  warmup: quick ? 100 : 300,
  throughputMs: quick ? 1000 : 3000,
  throughputWindows: 6,
  inFlight: [1, 16, 64],
  startSessions: quick ? 10 : 20,
  memorySessions: quick ? 10 : 50,
  scaleSessions: quick ? [200, 1000] : [1000, 10_000],
  profileCalls: quick ? 1000 : 5000,
}

const versionOf = (pkg: string) => (require(`${pkg}/package.json`) as { version: string }).version

const results: Results = {
  machine: {
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    kernel: execFileSync('uname', ['-sr']).toString().trim(),
  },
  versions: {
    ferry: versionOf('@ferry/bridge'),
    supergateway: versionOf('supergateway'),
    'server-everything': versionOf('@modelcontextprotocol/server-everything'),
  },
  plan,
  rounds,
  latency: {},
  throughput: {},
  sessionStart: {},
  memory: {},
}

const log = (text: string) => process.stderr.write(`${text}\n`)
// Latency, throughput and session start run their contenders all at once, in turns; memory
// one contender after another. The two-hop floors (`floor`, and `hono-floor` served through
// Hono) are measured for latency only; `ferry-ungated`, Ferry without its start gate, for
// session start only.
const latencyContenders = ['ferry', 'supergateway', 'stdio', 'floor', 'hono-floor'] as const
const throughputContenders = ['ferry', 'supergateway'] as const
const startContenders = ['ferry', 'supergateway', 'stdio', 'ferry-ungated'] as const
const memoryContenders = ['ferry', 'supergateway', 'stdio'] as const
const push = <T>(table: Record<string, T[]>, name: string, value: T) => {
  ;(table[name] ??= []).push(value)
}

for (let round = 1; round <= rounds; round++) {
  // Rotate the order each round so no contender always runs first on a cold machine.
  const rotated = <T>(list: readonly T[]) => list.map((_, i) => list[(i + round) % list.length]!)
  /** Starts `list` (rotated) together and hands them to `measure`; stops them after. */
  const together = async (
    list: readonly string[],
    measure: (running: Contender[], names: string[]) => Promise<void>
  ) => {
    const names = rotated(list)
    const running: Contender[] = []
    try {
      for (const name of names) running.push(await starters[name]!())
      await measure(running, names)
    } finally {
      await Promise.all(running.map((contender) => contender.stop()))
    }
  }
  log(`round ${round}/${rounds}: latency`)
  await together(latencyContenders, async (running, names) => {
    const summaries = await latency(running, plan.latencyCalls, plan.warmup, plan.latencyBlocks)
    summaries.forEach((summary, i) => push(results.latency, names[i]!, summary))
  })
  log(`round ${round}/${rounds}: throughput`)
  await together(throughputContenders, async (running, names) => {
    for (const inFlight of plan.inFlight) {
      const measured = await throughput(
        running,
        4,
        inFlight,
        plan.throughputMs,
        plan.throughputWindows
      )
      measured.forEach((t, i) => push((results.throughput[inFlight] ??= {}), names[i]!, t))
    }
  })
  log(`round ${round}/${rounds}: session start`)
  await together(startContenders, async (running, names) => {
    const measured = await sessionStart(running, plan.startSessions, 5)
    measured.forEach((start, i) => push(results.sessionStart, names[i]!, start))
  })
  for (const name of rotated(memoryContenders)) {
    log(`round ${round}/${rounds}: memory, ${name}`)
    const contender: Contender = await starters[name]!()
    try {
      push(results.memory, name, await memory(contender, plan.memorySessions))
    } finally {
      await contender.stop()
    }
  }
}

log('kubernetes runtime on the simulated cluster')
results.kubernetes = await runKubernetesStart(quick ? 5 : 20)
log('scale')
results.scale = await runScale(plan.scaleSessions)
log('profiles')
const profileDir = values['no-write']
  ? mkdtempSync(join(tmpdir(), 'ferry-bench-profiles-'))
  : join(here, '../../docs/profiles')
results.profiles = {
  calls: plan.profileCalls,
  graphs: await runProfiles(plan.profileCalls, profileDir),
}

const { markdown, svg } = renderReport(results)
process.stdout.write(markdown)
if (!values['no-write']) {
  writeFileSync(join(here, '../../docs/benchmarks.md'), markdown)
  writeFileSync(join(here, '../../docs/benchmarks.svg'), svg)
  log('wrote docs/benchmarks.md, docs/benchmarks.svg and docs/profiles/')
} else {
  rmSync(profileDir, { recursive: true, force: true })
}
