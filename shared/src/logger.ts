/**
 * @module
 * Structured JSON-line logging shared by the bridge and the sidecar.
 * A thin seam over pino so modules depend on the {@link Logger} shape, not on pino.
 */
import { pino } from 'pino'

/** Every log level, most severe first (`silent` logs nothing). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export type LogLevel = (typeof LOG_LEVELS)[number]

/** The logging surface Ferry modules use; pino's logger satisfies it. */
export interface Logger {
  error(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  debug(obj: object, msg?: string): void
  child(bindings: Record<string, unknown>): Logger
}

export interface LoggerOptions {
  /** Component name written as `component` on every line (`bridge`, `sidecar`). */
  name: string
  level?: LogLevel
  /** Defaults to standard error so standard output stays free for protocol use. */
  destination?: NodeJS.WritableStream
}

/** Creates a JSON-lines logger. */
export const createLogger = (options: LoggerOptions): Logger =>
  pino(
    {
      base: { component: options.name },
      level: options.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ fd: 2, sync: false })
  )

/** A logger that writes nothing, for tests and embedding. */
export const silentLogger: Logger = createLogger({ name: 'silent', level: 'silent' })
