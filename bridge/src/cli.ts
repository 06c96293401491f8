/**
 * @module
 * The `ferry` command.
 *
 * - `ferry serve`: runs the bridge. `HOST`, `PORT`, `FERRY_CONFIG` (catalog file)
 *   and `FERRY_SESSION_KEYS` (keyring file) come from the environment; without a
 *   catalog the built-in one serves `@modelcontextprotocol/server-everything`.
 *   Before listening it checks the auth settings (`checkCatalogAuth`): an unauthenticated
 *   bridge on a non-loopback address is refused (exit 1).
 * - `ferry auth hash-token [--generate]`: the `sha256` value of a static bearer token read from
 *   standard input, or of a freshly generated one.
 * - `ferry keys new <file>`: creates a keyring file, or adds a key to one;
 *   `ferry keys primary <file> <id>` and `ferry keys drop <file> <id>` finish a rotation.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  type Catalog,
  type Logger,
  CatalogError,
  createLogger,
  defaultCatalog,
  loadCatalogFile,
} from '@ferry/shared'
import { checkCatalogAuth } from './auth/startup.ts'
import { generateToken, hashToken } from './auth/static-tokens.ts'
import { serveBridge } from './bridge.ts'
import {
  Keyring,
  KeyringError,
  addKeyToFile,
  loadKeyringFile,
  removeKeyFromFile,
  setPrimaryKey,
} from './session/keyring.ts'
import { startTelemetry } from './telemetry/sdk.ts'

const USAGE = `Usage:
  ferry serve                 run the bridge
  ferry keys new <file> [--id <id>] [--primary]
                              create a keyring file, or add a key to one
  ferry keys primary <file> <id>
                              make a key the one that seals new session ids
  ferry keys drop <file> <id> drop a key (its session ids stop working)
  ferry auth hash-token [--generate]
                              print the catalog's sha256 value of a static bearer token read
                              from standard input; --generate makes a new token and prints both

Environment (ferry serve):
  HOST, PORT                  listen address (override the catalog's bridge.host/port)
  FERRY_CONFIG                catalog file (YAML or JSON); default: the built-in catalog
  FERRY_SESSION_KEYS          keyring file; default: a fresh random key
  OTEL_EXPORTER_OTLP_ENDPOINT export traces and metrics over OTLP (off when unset); the other
                              standard OTEL_* variables apply (docs/observability.md)
`

/** The built-in catalog, pointing at the installed server-everything. */
export const builtInCatalog = (): Catalog => {
  const require = createRequire(import.meta.url)
  const manifest = require.resolve('@modelcontextprotocol/server-everything/package.json')
  const bin = (require(manifest) as { bin: Record<string, string> }).bin['mcp-server-everything']!
  return defaultCatalog({
    everythingCommand: process.execPath,
    everythingArgs: [join(dirname(manifest), bin), 'stdio'],
  })
}

const applyListenOverrides = (catalog: Catalog, env: NodeJS.ProcessEnv): Catalog => {
  const port = env.PORT === undefined ? catalog.bridge.port : Number(env.PORT)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new CatalogError(
      'invalid environment',
      [{ path: 'PORT', message: `not a port: ${env.PORT}` }],
      'PORT'
    )
  }
  return { ...catalog, bridge: { ...catalog.bridge, host: env.HOST ?? catalog.bridge.host, port } }
}

async function serveCommand(env: NodeJS.ProcessEnv): Promise<void> {
  const catalog = applyListenOverrides(
    env.FERRY_CONFIG ? await loadCatalogFile(env.FERRY_CONFIG) : builtInCatalog(),
    env
  )
  // Before anything starts: an unauthenticated bridge must not become reachable by accident.
  const authCheck = checkCatalogAuth(catalog)
  if (!authCheck.ok) throw new StartupRefused(authCheck.error)
  // Then telemetry, so that whatever starts after it can be traced.
  const telemetry = await startTelemetry(env)
  const logger: Logger = createLogger({ name: 'bridge', level: catalog.bridge.logLevel })
  for (const warning of authCheck.warnings) logger.warn({}, warning)
  let keyring: Keyring
  if (env.FERRY_SESSION_KEYS) {
    keyring = await loadKeyringFile(env.FERRY_SESSION_KEYS)
  } else {
    keyring = await Keyring.generate()
    logger.warn(
      {},
      'FERRY_SESSION_KEYS is not set: using a random session key, so sessions will not survive a restart and other replicas cannot serve them'
    )
  }
  const running = await serveBridge({
    catalog,
    keyring,
    logger,
    tracer: telemetry.tracer,
    metricReaders: telemetry.metricReaders,
  })
  const { host } = catalog.bridge
  const shown = host.includes(':') ? `[${host}]` : host
  const names = Object.keys(catalog.servers)
  logger.info(
    {
      endpoints: [
        ...(catalog.defaultServer ? [`http://${shown}:${running.port}/mcp`] : []),
        ...names.map((name) => `http://${shown}:${running.port}/${name}/mcp`),
      ],
    },
    'MCP endpoints ready'
  )
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'shutting down')
      void running
        .stop()
        .then(() => telemetry.shutdown())
        .then(() => process.exit(0))
    })
  }
}

async function keysCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { id: { type: 'string' }, primary: { type: 'boolean' } },
  })
  const [verb, file, id] = positionals
  if (!file) throw new UsageError(USAGE)
  if (verb === 'new') {
    const added = await addKeyToFile(file, { id: values.id, primary: values.primary })
    process.stdout.write(
      added.created
        ? `created ${file} with key ${added.id}\n`
        : `added key ${added.id} to ${file}${values.primary ? ' as the primary key' : ' (not yet primary: roll every replica, then `ferry keys primary`)'}\n`
    )
  } else if (verb === 'primary' && id) {
    await setPrimaryKey(file, id)
    process.stdout.write(`key ${id} now seals new session ids in ${file}\n`)
  } else if (verb === 'drop' && id) {
    await removeKeyFromFile(file, id)
    process.stdout.write(`dropped key ${id} from ${file}: session ids sealed with it now get 404\n`)
  } else {
    throw new UsageError(USAGE)
  }
}

async function authCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { generate: { type: 'boolean' } },
  })
  if (positionals[0] !== 'hash-token' || positionals.length !== 1) throw new UsageError(USAGE)
  if (values.generate) {
    const token = generateToken()
    process.stdout.write(`token:  ${token}\nsha256: ${await hashToken(token)}\n`)
    return
  }
  let input = ''
  for await (const chunk of process.stdin) input += (chunk as Buffer).toString('utf8')
  const token = input.replace(/\r?\n$/, '')
  if (token === '' || /[\r\n]/.test(token)) {
    throw new UsageError(
      'ferry auth hash-token reads one token on standard input (or use --generate)'
    )
  }
  process.stdout.write(`${await hashToken(token)}\n`)
}

class UsageError extends Error {}

/** `ferry serve` refused to start (an unsafe configuration). */
class StartupRefused extends Error {}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const [command, ...rest] = argv
  try {
    if (command === 'serve') await serveCommand(env)
    else if (command === 'keys') await keysCommand(rest)
    else if (command === 'auth') await authCommand(rest)
    else throw new UsageError(USAGE)
  } catch (error) {
    // Configuration errors carry their own readable text; a stack trace helps nobody.
    const known =
      error instanceof UsageError ||
      error instanceof CatalogError ||
      error instanceof KeyringError ||
      error instanceof StartupRefused
    const message = known || error instanceof Error ? (error as Error).message : String(error)
    process.stderr.write(`ferry: ${message}\n`)
    process.exit(error instanceof UsageError ? 2 : 1)
  }
}
