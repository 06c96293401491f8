/**
 * The scale part of the benchmark: bridge RSS and latency with many open
 * sessions (see scale-host.ts for how the sessions are hosted).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BRIDGE_NODE_FLAGS } from './contenders.ts'
import { createAgent, McpHttpSession } from './mcp-http-client.ts'
import { type LatencySummary, summarize } from './stats.ts'

const here = dirname(fileURLToPath(import.meta.url))
/** Rounds of 50 sessions opened, used and closed before the baseline is taken. */
const WARM_UP_ROUNDS = 4

export interface ScaleResult {
  sessions: number
  bridgeRss: number
  bridgeBytesPerSession: number
  latency: LatencySummary
}

const startNode = (script: string, args: string[], env: Record<string, string> = {}) =>
  new Promise<{ child: ChildProcess; ready: Record<string, number> }>((resolve, reject) => {
    const child = spawn(process.execPath, [...args, join(here, script)], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    createInterface({ input: child.stdout! }).once('line', (line) =>
      resolve({ child, ready: JSON.parse(line) as Record<string, number> })
    )
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)))
  })

const memoryOf = async (controlPort: number) =>
  (await (await fetch(`http://127.0.0.1:${controlPort}/`)).json()) as {
    rss: number
    connections: number
  }

export const runScale = async (counts: number[]): Promise<ScaleResult[]> => {
  const results: ScaleResult[] = []
  const host = await startNode('scale-host.ts', [])
  const bridge = await startNode('scale-bridge.ts', ['--expose-gc', ...BRIDGE_NODE_FLAGS], {
    SCALE_HOST_PORT: String(host.ready.port),
  })
  const agent = createAgent(64)
  try {
    const url = `http://127.0.0.1:${bridge.ready.port}/mcp`
    // Warm the bridge up so the baseline includes its steady-state code and caches: the
    // session start, relay and end paths compiled, the heap grown to its working size. Then
    // the growth from the baseline is what the open sessions themselves hold.
    for (let round = 0; round < WARM_UP_ROUNDS; round++) {
      const warm = await Promise.all(
        Array.from({ length: 50 }, async () => {
          const session = new McpHttpSession(url, agent)
          await session.open()
          for (let i = 0; i < 4; i++) await session.echo('warm')
          return session
        })
      )
      await Promise.all(warm.map((session) => session.close()))
    }
    const before = await memoryOf(bridge.ready.control!)
    // One bridge grows through every count, so the step between two counts is the cost of
    // the sessions added in between.
    const sessions: McpHttpSession[] = []
    for (const count of [...counts].sort((a, b) => a - b)) {
      while (sessions.length < count) {
        sessions.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(50, count - sessions.length) }, async () => {
              const session = new McpHttpSession(url, agent)
              await session.open()
              return session
            })
          ))
        )
      }
      const samples: number[] = []
      for (let i = 0; i < 2000; i++) {
        const session = sessions[Math.floor(Math.random() * sessions.length)]!
        const t0 = performance.now()
        await session.echo('scale')
        samples.push(performance.now() - t0)
      }
      const after = await memoryOf(bridge.ready.control!)
      if (after.connections < count) {
        throw new Error(`the bridge holds ${after.connections} connections for ${count} sessions`)
      }
      results.push({
        sessions: count,
        bridgeRss: after.rss,
        bridgeBytesPerSession: (after.rss - before.rss) / count,
        latency: summarize(samples),
      })
    }
  } finally {
    agent.destroy()
    bridge.child.kill('SIGKILL')
    host.child.kill('SIGKILL')
  }
  return results
}
