/**
 * @module
 * `ferry-sidecar [options] -- <command> [args…]`: the entry point of the bundled
 * sidecar (`dist/sidecar.mjs`), started by the Kubernetes runtime as the session pod's
 * command and by the local runtime for a dedicated sidecar. `ferry-sidecar host` runs the
 * local runtime's shared sidecar host instead (see `host.ts`).
 *
 * The verifier of the per-session secret comes from `FERRY_SIDECAR_VERIFIER` or
 * `--verifier-file` and is removed from the environment the MCP server gets.
 */
import { readFileSync, rmdirSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { parseArgs } from 'node:util'
import { type LogLevel, LOG_LEVELS, createLogger, parseDuration, parseSize } from '@ferry/shared'
import { type HostRequest, runSidecarHost } from './host.ts'
import { runSidecar, type SidecarOptions } from './sidecar.ts'
import { loadSessionTracer } from './telemetry/session-tracer.ts'

export const VERIFIER_ENV = 'FERRY_SIDECAR_VERIFIER'
export const SESSION_ENV = 'FERRY_SESSION'

const USAGE = `Usage: ferry-sidecar [options] -- <command> [args...]
       ferry-sidecar host [--host <addr>] [--port <n> | --socket <path>] [--log-level <level>]

Starts <command> as a stdio MCP server and serves it to Ferry bridges over WebSocket.

Options:
  --session <name>        session name (default: $${SESSION_ENV})
  --verifier-file <path>  file holding the session secret's verifier (default: $${VERIFIER_ENV})
  --host <addr>           address to listen on (default: $POD_IP or 127.0.0.1)
  --port <n>              port to listen on, 0 for any (default: 8080)
  --idle-timeout <dur>    end the session after this long without use (default: 15m)
  --stop-grace <dur>      SIGTERM to SIGKILL grace for the server (default: 5s)
  --max-line <size>       longest server output line (default: 16mb)
  --max-payload <size>    largest WebSocket frame from a bridge (default: 16mb)
  --heartbeat <dur>       WebSocket ping interval (default: 15s)
  --log-max-events <n>    event log bound, events (default: 1000)
  --log-max-bytes <size>  event log bound, bytes (default: 8mb)
  --log-max-age <dur>     event log bound, age (default: 10m)
  --ready-fd <n>          write {"port":N} to this file descriptor once listening,
                          or {"error":"…"} if the sidecar cannot start
  --cwd <dir>             working directory of the server
  --log-level <level>     fatal|error|warn|info|debug|trace|silent (default: info)
  -h, --help              show this help

\`host\` runs many sessions in one process for the local runtime, which starts it with a Node
IPC channel and asks it for sessions over that channel (--port defaults to 0 there; --socket
listens on a Unix socket instead, whose directory the host removes on exit once it is empty).

Tracing: with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT set (and not
OTEL_SDK_DISABLED=true), spans are exported over OTLP/HTTP as service "ferry-sidecar"; the other
standard OTEL_* variables apply (protocol http/protobuf or http/json, headers, sampler).
`

export class UsageError extends Error {}

/** Node's timers overflow above this and then fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** The per-session settings a runtime passes to the sidecars it starts. */
export interface SidecarSettings {
  idleTimeoutMs: number
  stopGraceMs: number
  maxLineBytes: number
  maxPayload: number
  heartbeatMs: number
  eventLog: { maxEvents: number; maxBytes: number; maxAgeMs: number }
  logLevel: LogLevel
}

/** The command-line options that give a sidecar these settings (the inverse of the parser). */
export const sidecarSettingsArgs = (settings: SidecarSettings): string[] => [
  '--idle-timeout',
  String(settings.idleTimeoutMs),
  '--stop-grace',
  String(settings.stopGraceMs),
  '--max-line',
  String(settings.maxLineBytes),
  '--max-payload',
  String(settings.maxPayload),
  '--heartbeat',
  String(settings.heartbeatMs),
  '--log-max-events',
  String(settings.eventLog.maxEvents),
  '--log-max-bytes',
  String(settings.eventLog.maxBytes),
  '--log-max-age',
  String(settings.eventLog.maxAgeMs),
  '--log-level',
  settings.logLevel,
]

/** Parses the command line and environment into sidecar options. */
export function parseSidecarArgs(
  argv: string[],
  env: Record<string, string | undefined>
): SidecarOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      session: { type: 'string' },
      'verifier-file': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'idle-timeout': { type: 'string' },
      'stop-grace': { type: 'string' },
      'max-line': { type: 'string' },
      'max-payload': { type: 'string' },
      heartbeat: { type: 'string' },
      'log-max-events': { type: 'string' },
      'log-max-bytes': { type: 'string' },
      'log-max-age': { type: 'string' },
      'ready-fd': { type: 'string' },
      cwd: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) throw new UsageError(USAGE)
  const [command, ...args] = positionals
  if (!command) throw new UsageError(`missing the server command after --\n\n${USAGE}`)
  const sessionName = values.session ?? env[SESSION_ENV]
  if (!sessionName) throw new UsageError(`missing --session (or $${SESSION_ENV})`)
  const verifier = values['verifier-file']
    ? readFileSync(values['verifier-file'], 'utf8').trim()
    : env[VERIFIER_ENV]
  if (!verifier) {
    throw new UsageError(
      `missing the session secret's verifier: set $${VERIFIER_ENV} or --verifier-file`
    )
  }
  const integer = (name: string, text: string | undefined, fallback: number) => {
    if (text === undefined) return fallback
    const value = Number(text)
    if (!Number.isInteger(value) || value < 0)
      throw new UsageError(`--${name}: not a whole number: ${text}`)
    return value
  }
  const duration = (name: string, text: string | undefined, fallback: string, min = 0) => {
    let value: number
    try {
      value = parseDuration(text ?? fallback)
    } catch (error) {
      throw new UsageError(`--${name}: ${(error as Error).message}`)
    }
    if (value < min || value > MAX_TIMER_MS) {
      throw new UsageError(`--${name}: must be between ${min}ms and ${MAX_TIMER_MS}ms: ${text}`)
    }
    return value
  }
  const size = (name: string, text: string | undefined, fallback: string) => {
    try {
      return parseSize(text ?? fallback)
    } catch (error) {
      throw new UsageError(`--${name}: ${(error as Error).message}`)
    }
  }
  const port = portOption(values.port, 8080)
  const logLevel = logLevelOption(values['log-level'])
  const serverEnv = { ...env }
  delete serverEnv[VERIFIER_ENV]
  return {
    command,
    args,
    env: serverEnv,
    cwd: values.cwd,
    sessionName,
    verifier,
    host: values.host ?? env.POD_IP ?? '127.0.0.1',
    port,
    idleTimeoutMs: duration('idle-timeout', values['idle-timeout'], '15m', 1),
    stopGraceMs: duration('stop-grace', values['stop-grace'], '5s'),
    maxLineBytes: size('max-line', values['max-line'], '16mb'),
    maxPayload: size('max-payload', values['max-payload'], '16mb'),
    heartbeatMs: duration('heartbeat', values.heartbeat, '15s', 1),
    eventLog: {
      maxEvents: integer('log-max-events', values['log-max-events'], 1000),
      maxBytes: size('log-max-bytes', values['log-max-bytes'], '8mb'),
      maxAgeMs: duration('log-max-age', values['log-max-age'], '10m'),
    },
    readyFd:
      values['ready-fd'] === undefined ? undefined : integer('ready-fd', values['ready-fd'], 3),
    logLevel,
  }
}

const portOption = (text: string | undefined, fallback: number): number => {
  if (text === undefined) return fallback
  const port = Number(text)
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port: not a port number: ${text}`)
  return port
}

const logLevelOption = (text: string | undefined): LogLevel => {
  const logLevel = text ?? 'info'
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`--log-level: one of ${LOG_LEVELS.join('|')}: ${logLevel}`)
  }
  return logLevel as LogLevel
}

export interface SidecarHostArgs {
  host: string
  port: number
  socket?: string
  logLevel: LogLevel
}

/** Parses the command line of `ferry-sidecar host`. */
export function parseHostArgs(argv: string[]): SidecarHostArgs {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      socket: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) throw new UsageError(USAGE)
  if (values.socket !== undefined && (values.port !== undefined || values.host !== undefined)) {
    throw new UsageError('--socket: listens on a Unix socket, so --host and --port do not apply')
  }
  if (values.socket !== undefined && !values.socket.startsWith('/')) {
    throw new UsageError(`--socket: not an absolute path: ${values.socket}`)
  }
  return {
    host: values.host ?? '127.0.0.1',
    port: portOption(values.port, 0),
    ...(values.socket === undefined ? {} : { socket: values.socket }),
    logLevel: logLevelOption(values['log-level']),
  }
}

/** Writes a fatal JSON log line synchronously, so it is out before the process exits. */
const writeFatal = (fields: Record<string, unknown>, msg: string) => {
  const line = {
    level: 'fatal',
    time: new Date().toISOString(),
    component: 'sidecar',
    ...fields,
    msg,
  }
  writeSync(2, `${JSON.stringify(line)}\n`)
}

/** Parses with `parse`, or exits: 0 after printing the help, 2 on a usage error. */
const parseOrExit = <T>(parse: () => T): T => {
  try {
    return parse()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    process.stderr.write(message.endsWith('\n') ? message : `${message}\n`)
    process.exit(error instanceof UsageError && message === USAGE ? 0 : 2)
  }
}

/**
 * A sidecar in an unknown state must not linger: say why and exit, which also kills every
 * server process group it runs (see runSidecar).
 */
const exitOnUncaughtException = (fields: Record<string, unknown>) =>
  process.on('uncaughtException', (error) => {
    const err = error instanceof Error ? error : new Error(String(error))
    writeFatal(
      { ...fields, err: { type: err.name, message: err.message, stack: err.stack } },
      'uncaught exception'
    )
    process.exit(1)
  })

/** Lets pino's asynchronous destination flush, then leaves even if a stray handle lingers. */
const exitSoon = () => setTimeout(() => process.exit(), 100).unref()

async function hostMain(argv: string[]): Promise<void> {
  const args = parseOrExit(() => parseHostArgs(argv))
  const send = process.send?.bind(process)
  if (!send) {
    process.stderr.write(
      'ferry-sidecar host: start it with a Node IPC channel (the local runtime does)\n'
    )
    process.exit(2)
  }
  exitOnUncaughtException({ host: true })
  const logger = createLogger({ name: 'sidecar', level: args.logLevel })
  let host
  try {
    host = await runSidecarHost({
      host: args.host,
      port: args.port,
      socket: args.socket,
      logger,
      send: (event) => {
        if (process.connected) send(event)
      },
    })
  } catch (error) {
    writeFatal({ host: true }, (error as Error).message)
    process.exit(1)
  }
  process.on('message', (request) => host.handle(request as HostRequest))
  process.on('disconnect', () => host.release())
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => host.stop())
  send({ t: 'listening', port: host.port, ...(args.socket ? { socket: args.socket } : {}) })
  logger.info(
    args.socket ? { socket: args.socket } : { host: args.host, port: host.port },
    'sidecar host listening'
  )
  await host.done
  // Closing the listener removed the socket; its private directory goes too, once empty.
  if (args.socket) {
    try {
      rmdirSync(dirname(args.socket))
    } catch {
      // Not empty, or not there: not ours to remove.
    }
  }
  if (process.connected) process.disconnect()
  exitSoon()
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'host') return hostMain(argv.slice(1))
  const options = parseOrExit(() => parseSidecarArgs(argv, process.env))
  exitOnUncaughtException({ session: options.sessionName })
  let sidecar
  try {
    const logger = createLogger({ name: 'sidecar', level: options.logLevel }).child({
      session: options.sessionName,
    })
    const tracer = await loadSessionTracer(process.env, {
      sessionName: options.sessionName,
      logger,
    })
    sidecar = await runSidecar({ ...options, logger, tracer })
  } catch (error) {
    const message = (error as Error).message
    writeFatal({ session: options.sessionName }, message)
    // Whoever waits for readiness learns why, not only that the sidecar exited.
    if (options.readyFd !== undefined) {
      try {
        writeSync(options.readyFd, `${JSON.stringify({ error: message })}\n`)
      } catch {
        // nobody is listening
      }
    }
    process.exit(1)
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => sidecar.stop('shutdown'))
  }
  process.exitCode = await sidecar.done
  exitSoon()
}
