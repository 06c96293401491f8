/**
 * @module test/helpers/bridge
 *
 * Starts a real Ferry bridge for end-to-end tests, on 127.0.0.1 and a free port:
 *
 * - {@link startBridge}: in this process, through `serveBridge`, serving the conformance fixture
 *   (`fixture`) and `@modelcontextprotocol/server-everything` (`everything`, also at `/mcp`).
 *   `close()` stops every sidecar it started, then the bridge, so nothing is left running.
 * - {@link startBridgeProcess}: as a separate `ferry serve` process (`bridge/dist/bin.js`), with
 *   its catalog and keyring in files; the port comes from its `bridge listening` log line.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Keyring, type LocalRuntime, type RunningBridge, serveBridge } from '@ferry/bridge'
import { CatalogSchema, createLogger } from '@ferry/shared'
import { childrenOf, descendantsOf, killTrees, waitGone } from './processes.ts'

const require = createRequire(import.meta.url)

/** The conformance fixture stdio server, run with Node's type stripping. */
export const fixturePath = fileURLToPath(
  new URL('../fixtures/conformance-server.ts', import.meta.url)
)
/** The `ferry` command's entry point. */
export const ferryBin = fileURLToPath(new URL('../../bridge/dist/bin.js', import.meta.url))

/** How the bridge's built-in catalog (`builtInCatalog()` in `bridge/src/cli.ts`) starts server-everything. */
export const everythingCommand = (): { command: string; args: string[] } => {
  const manifest = require.resolve('@modelcontextprotocol/server-everything/package.json')
  const bin = (require(manifest) as { bin: Record<string, string> }).bin['mcp-server-everything']!
  return { command: process.execPath, args: [join(dirname(manifest), bin), 'stdio'] }
}

/** Catalog entries for the two standard servers. */
export const standardServers = (): Record<string, Record<string, unknown>> => ({
  fixture: { runtime: 'local', command: process.execPath, args: [fixturePath], idleTimeout: '2m' },
  everything: { runtime: 'local', ...everythingCommand(), idleTimeout: '2m' },
})

export interface TestBridgeOptions {
  keyring?: Keyring
  /** Overrides of the catalog's `bridge:` section. */
  bridge?: Record<string, unknown>
  /** Servers added to (or replacing) `fixture` and `everything`. */
  servers?: Record<string, Record<string, unknown>>
}

export interface TestBridge {
  running: RunningBridge
  keyring: Keyring
  port: number
  /** `http://127.0.0.1:<port>` */
  origin: string
  /** The MCP endpoint of `server`, or `/mcp` (the default server) without one. */
  url(server?: string): string
  /** The local runtime, which started this bridge's sidecars. */
  local: LocalRuntime
  /** Sidecar child processes still running, by session name (the runtime's own table). */
  sidecars(): Map<string, ChildProcess>
  /** Stops every sidecar this bridge started, then the bridge. Idempotent. */
  close(): Promise<void>
}

export const startBridge = async (options: TestBridgeOptions = {}): Promise<TestBridge> => {
  const keyring = options.keyring ?? (await Keyring.generate())
  const catalog = CatalogSchema.parse({
    bridge: {
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      shutdownGrace: '200ms',
      ...options.bridge,
    },
    defaultServer: 'everything',
    servers: { ...standardServers(), ...options.servers },
  })
  const logger = createLogger({ name: 'bridge', level: 'silent' })
  const running = await serveBridge({ catalog, keyring, logger })
  const local = running.bridge.runtimes.local as LocalRuntime
  const origin = `http://127.0.0.1:${running.port}`
  // Sidecars are detached and unref'd; the runtime's table is the only handle on them.
  const table = () => (local as unknown as { children: Map<string, ChildProcess> }).children
  const started = new Set<number>()
  let closing: Promise<void> | undefined
  return {
    running,
    keyring,
    port: running.port,
    origin,
    url: (server) => (server ? `${origin}/${server}/mcp` : `${origin}/mcp`),
    local,
    sidecars: () => {
      for (const child of table().values()) if (child.pid) started.add(child.pid)
      return new Map(table())
    },
    close: () =>
      (closing ??= (async () => {
        for (const child of table().values()) if (child.pid) started.add(child.pid)
        // Servers run in their own process groups: note them before their sidecars go.
        const servers = [...started].flatMap(descendantsOf)
        await local.stopAll()
        await running.stop()
        const left = await waitGone([...started, ...servers], 5000)
        killTrees(left)
      })()),
  }
}

/** A temporary directory for one test file's files. */
export const tempDir = (prefix = 'ferry-e2e-'): string => mkdtempSync(join(tmpdir(), prefix))

/** Writes a catalog file (JSON, which is YAML too) and returns its path. */
export const writeCatalog = (dir: string, catalog: unknown, name = 'catalog.json'): string => {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify(catalog, null, 2))
  return path
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** The environment of this process without Ferry's own variables nor OpenTelemetry's. */
export const cleanEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  for (const name of Object.keys(env)) {
    if (/^(FERRY|OTEL)_/.test(name) || name === 'PORT' || name === 'HOST') delete env[name]
  }
  return env
}

/** Runs `ferry <args>` to completion (killed after `timeoutMs`). */
export const runFerry = (
  args: string[],
  env: NodeJS.ProcessEnv = cleanEnv(),
  timeoutMs = 15_000
): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferryBin, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      // Give the pipes a moment to deliver what was written just before exit.
      setImmediate(() => resolve({ code, signal, stdout, stderr }))
    })
  })

/** One parsed JSON log line of a bridge process. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: string }

export interface BridgeProcess {
  child: ChildProcess
  port: number
  url(server?: string): string
  /** JSON log lines written to standard error so far (its sidecars' included). */
  logs: LogLine[]
  /** Everything written to standard error so far. */
  stderr(): string
  /** Resolves once the bridge process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Sidecars this bridge started that were seen while it ran (pids). */
  sidecarPids(): number[]
  /** Signals the bridge and waits for it to exit (SIGKILL after `timeoutMs`). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>
}

export interface BridgeProcessOptions {
  /** `FERRY_CONFIG`. */
  catalogFile: string
  /** `FERRY_SESSION_KEYS`; unset when undefined. */
  keysFile?: string
  /** `PORT`; default 0. */
  port?: number
  env?: NodeJS.ProcessEnv
  /** How long to wait for the `bridge listening` line. Default 15 s. */
  readyTimeoutMs?: number
}

/** Starts `ferry serve` and waits for its `bridge listening` log line. */
export const startBridgeProcess = (options: BridgeProcessOptions): Promise<BridgeProcess> => {
  const env: NodeJS.ProcessEnv = {
    ...cleanEnv(),
    ...options.env,
    FERRY_CONFIG: options.catalogFile,
    PORT: String(options.port ?? 0),
  }
  if (options.keysFile) env.FERRY_SESSION_KEYS = options.keysFile
  const child = spawn(process.execPath, [ferryBin, 'serve'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const logs: LogLine[] = []
  let stderr = ''
  const sidecars = new Set<number>()
  const noteSidecars = () => {
    if (child.pid && child.exitCode === null)
      for (const pid of childrenOf(child.pid)) sidecars.add(pid)
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal }))
  )
  const lines = createInterface({ input: child.stderr! })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`ferry serve did not report its port in time:\n${stderr}`))
    }, options.readyTimeoutMs ?? 15_000)
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`ferry serve exited (${code ?? signal}) before listening:\n${stderr}`))
    })
    lines.on('line', (line) => {
      stderr += `${line}\n`
      let parsed: LogLine
      try {
        parsed = JSON.parse(line) as LogLine
      } catch {
        return
      }
      logs.push(parsed)
      if (parsed.msg === 'session started') noteSidecars()
      if (parsed.msg !== 'bridge listening' || typeof parsed.port !== 'number') return
      clearTimeout(timer)
      const port = parsed.port
      resolve({
        child,
        port,
        url: (server) =>
          server ? `http://127.0.0.1:${port}/${server}/mcp` : `http://127.0.0.1:${port}/mcp`,
        logs,
        stderr: () => stderr,
        exited,
        sidecarPids: () => {
          noteSidecars()
          return [...sidecars]
        },
        stop: async (signal = 'SIGTERM', timeoutMs = 10_000) => {
          noteSidecars()
          if (child.exitCode !== null || child.signalCode !== null) return
          child.kill(signal)
          const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
          await exited
          clearTimeout(timer)
        },
      })
    })
  })
}

/** Kills sidecars left running by bridge processes (they outlive their bridge by design). */
export const killSidecars = async (pids: Iterable<number>): Promise<void> => {
  const list = [...pids]
  const servers = list.flatMap(descendantsOf)
  killTrees(list, 'SIGTERM')
  const left = await waitGone([...list, ...servers], 5000)
  killTrees(left, 'SIGKILL')
}
