/**
 * @module
 * Durations and sizes as people write them in configuration and on command
 * lines (`30s`, `15m`, `4mb`), parsed to milliseconds and bytes.
 */
export const DURATION_HINT = 'expected a duration like "30s", "15m" or milliseconds'
export const SIZE_HINT = 'expected a size like "4mb", "512kb" or bytes'

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
}

// Binary multiples: the defaults are documented as MiB and nobody sizes buffers in powers of 10.
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
}

const QUANTITY = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i

// Plain numbers (and digit-only strings) are already in the base unit: milliseconds or bytes.
const parseQuantity = (
  value: string | number,
  units: Record<string, number>,
  hint: string
): number => {
  let result: number
  if (typeof value === 'number') {
    result = value < 0 ? Number.NaN : Math.round(value)
  } else {
    const match = QUANTITY.exec(value)
    const unit = match?.[2] ? units[match[2].toLowerCase()] : 1
    result = match?.[1] && unit !== undefined ? Math.round(Number(match[1]) * unit) : Number.NaN
  }
  if (!Number.isSafeInteger(result)) throw new RangeError(hint)
  return result
}

/**
 * Parses a duration into milliseconds. Numbers (and digit-only strings) are milliseconds;
 * strings take a unit `ms`, `s`, `m`, `h` or `d`, case-insensitive (`"500ms"`, `"1.5s"`, `"2h"`).
 * @throws {RangeError} when the value is not a non-negative duration.
 */
export const parseDuration = (value: string | number): number =>
  parseQuantity(value, DURATION_UNITS, DURATION_HINT)

/**
 * Parses a size into bytes. Numbers (and digit-only strings) are bytes; strings take a binary
 * unit `b`, `kb`, `mb` or `gb` (also `k`/`kib`, …), case-insensitive, so `"4mb"` is 4 MiB.
 * @throws {RangeError} when the value is not a non-negative size.
 */
export const parseSize = (value: string | number): number =>
  parseQuantity(value, SIZE_UNITS, SIZE_HINT)
