/**
 * The three contenders, all fronting the same server-everything stdio server:
 * Ferry (bridge process, local runtime), supergateway 4.0.0 `--stateful`, and
 * direct stdio. Each is started fresh and stopped with its whole process tree.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createAgent, McpHttpSession } from './mcp-http-client.ts'
import { McpStdioSession } from './mcp-stdio-client.ts'
import { processTree } from './memory.ts'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const root = join(here, '../..')

const packageBin = (pkg: string, name?: string) => {
  const manifest = require.resolve(`${pkg}/package.json`)
  const { bin } = require(manifest) as { bin: string | Record<string, string> }
  return join(
    dirname(manifest),
    typeof bin === 'string' ? bin : name ? bin[name]! : Object.values(bin)[0]!
  )
}

/** Node flags the bridge is run with (`npm start`, the `ferry` shebang, the image). */
export const BRIDGE_NODE_FLAGS = ['--max-semi-space-size=4']

export const everythingServer = [
  process.execPath,
  packageBin('@modelcontextprotocol/server-everything'),
  'stdio',
]

export interface BenchSession {
  echo(message: string): Promise<unknown>
  call(method: string, params?: Record<string, unknown>): Promise<unknown>
  open(): Promise<void>
  close(): Promise<void>
}

export interface Contender {
  name: string
  /** A new, unopened session. */
  session(): BenchSession
  /** Every process the contender runs now (for memory). */
  pids(): number[]
  stop(): Promise<void>
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

const waitForPort = async (port: number, child: ChildProcess) => {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`contender exited with ${child.exitCode}`)
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`nothing listens on ${port}`)
}

const killTree = async (child: ChildProcess) => {
  const pids = child.pid ? processTree(child.pid) : []
  const exited = new Promise((resolve) =>
    child.exitCode === null ? child.once('exit', resolve) : resolve(null)
  )
  for (const pid of pids.reverse()) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
  await exited
}

const httpContender = (
  name: string,
  child: ChildProcess,
  url: string,
  maxSockets = 256
): Contender => {
  const agent = createAgent(maxSockets)
  return {
    name,
    session: () => new McpHttpSession(url, agent),
    pids: () => (child.pid ? processTree(child.pid) : []),
    stop: async () => {
      agent.destroy()
      await killTree(child)
    },
  }
}

/**
 * Ferry on its defaults; `ungated` lets every local start boot at once
 * (`bridge.local.maxConcurrentStarts: 0`), to show what the gate does to session starts.
 */
const startFerry = async (
  name = 'ferry',
  ungated = false,
  bin = 'bridge/dist/bin.js'
): Promise<Contender> => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-'))
  const catalog = join(dir, 'catalog.json')
  writeFileSync(
    catalog,
    JSON.stringify({
      bridge: {
        host: '127.0.0.1',
        port: 0,
        logLevel: 'warn',
        maxSessions: 0,
        ...(ungated ? { local: { maxConcurrentStarts: 0 } } : {}),
      },
      defaultServer: 'everything',
      servers: {
        everything: {
          runtime: 'local',
          command: everythingServer[0],
          args: everythingServer.slice(1),
          idleTimeout: '10m',
        },
      },
    })
  )
  const port = await freePort()
  // The same command `npm start` and the bridge image run.
  const child = spawn(process.execPath, [...BRIDGE_NODE_FLAGS, join(root, bin), 'serve'], {
    env: { ...process.env, FERRY_CONFIG: catalog, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'ignore'],
  })
  await waitForPort(port, child)
  return httpContender(name, child, `http://127.0.0.1:${port}/mcp`)
}

export const startSupergateway = async (): Promise<Contender> => {
  const port = await freePort()
  const child = spawn(
    process.execPath,
    [
      '--import',
      join(here, 'loopback-only.mjs'),
      packageBin('supergateway'),
      '--stdio',
      everythingServer.map((part) => JSON.stringify(part)).join(' '),
      '--outputTransport',
      'streamableHttp',
      '--stateful',
      '--port',
      String(port),
      '--logLevel',
      'none',
    ],
    { stdio: ['ignore', 'ignore', 'ignore'] }
  )
  await waitForPort(port, child)
  return httpContender('supergateway', child, `http://127.0.0.1:${port}/mcp`)
}

export const startStdio = async (): Promise<Contender> => {
  const sessions = new Set<McpStdioSession>()
  return {
    name: 'stdio',
    session: () => {
      let session: McpStdioSession | undefined
      const live = () => session!
      return {
        open: async () => {
          session = new McpStdioSession(everythingServer[0]!, everythingServer.slice(1))
          sessions.add(session)
          await session.open()
        },
        echo: (message) => live().echo(message),
        call: (method, params) => live().call(method, params),
        close: async () => {
          sessions.delete(live())
          await live().close()
        },
      }
    },
    pids: () => [...sessions].flatMap((s) => (s.child.pid ? processTree(s.child.pid) : [])),
    stop: async () => {
      await Promise.all([...sessions].map((s) => s.close()))
    },
  }
}

/** Spawns a bench script and waits for its `ready` line. */
const startScript = async (script: string, args: string[]): Promise<ChildProcess> => {
  const child = spawn(process.execPath, [join(here, script), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve())
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)))
  })
  return child
}

/**
 * The two-hop floor: Ferry's process layout (HTTP bridge → WebSocket on a Unix socket → relay
 * → stdio server) with nothing but the relaying (floor-bridge.ts, floor-relay.ts). One session.
 * `front` is how the floor bridge serves HTTP: `node:http` directly, or through Hono.
 */
const startFloor = async (name: string, front: 'node' | 'hono'): Promise<Contender> => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-floor-'))
  const socket = join(dir, 'relay.sock')
  const relay = await startScript('floor-relay.ts', [socket, ...everythingServer])
  const port = await freePort()
  const bridge = await startScript('floor-bridge.ts', [socket, String(port), front])
  const contender = httpContender(name, bridge, `http://127.0.0.1:${port}/mcp`)
  return {
    ...contender,
    pids: () => [...contender.pids(), ...(relay.pid ? processTree(relay.pid) : [])],
    stop: async () => {
      await contender.stop()
      await killTree(relay)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export const starters: Record<string, () => Promise<Contender>> = {
  ferry: () => startFerry(),
  'ferry-ungated': () => startFerry('ferry-ungated', true),
  supergateway: startSupergateway,
  stdio: startStdio,
  floor: () => startFloor('two-hop floor', 'node'),
  'hono-floor': () => startFloor('two-hop floor on Hono', 'hono'),
}
