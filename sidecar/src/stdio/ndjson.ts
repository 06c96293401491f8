/**
 * @module
 * Newline-delimited JSON framing for MCP's stdio transport: splits a child's byte stream
 * into lines (without parsing them) and turns a JSON text into exactly one line.
 */

const NEWLINE = 0x0a

export interface NdjsonDecoderOptions {
  /** Longest line accepted, in bytes, counted up to but excluding the `\n` (a `\r` counts). */
  maxLineBytes: number
  /** One complete line, `\r\n` already reduced to the text; never called with an empty line. */
  onLine(line: string): void
  /** A line crossed `maxLineBytes`; called once per such line with the bytes seen at that point. */
  onOversize(bytes: number): void
}

/** Splits a byte stream into lines, discarding lines longer than the limit. */
export class NdjsonDecoder {
  readonly #maxLineBytes: number
  readonly #onLine: (line: string) => void
  readonly #onOversize: (bytes: number) => void
  // Fragments of the current line, joined once when it ends, so a long line arriving in many
  // chunks costs O(n) rather than a concatenation per chunk.
  #pending: Buffer[] = []
  #pendingBytes = 0
  // Inside an oversize line: drop everything up to the next newline.
  #skipping = false

  constructor(options: NdjsonDecoderOptions) {
    this.#maxLineBytes = options.maxLineBytes
    this.#onLine = options.onLine
    this.#onOversize = options.onOversize
  }

  push(chunk: Buffer): void {
    let start = 0
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start)
      const end = newline === -1 ? chunk.length : newline
      if (this.#skipping) {
        if (newline === -1) return
        this.#skipping = false
      } else {
        const total = this.#pendingBytes + (end - start)
        if (total > this.#maxLineBytes) {
          this.#reset()
          this.#skipping = newline === -1
          this.#onOversize(total)
        } else if (newline === -1) {
          // Copy so a short tail does not pin the whole (possibly large) chunk in memory.
          this.#pending.push(Buffer.from(chunk.subarray(start)))
          this.#pendingBytes = total
        } else {
          const bytes =
            this.#pending.length === 0
              ? chunk.subarray(start, end)
              : Buffer.concat([...this.#pending, chunk.subarray(start, end)], total)
          this.#reset()
          this.#emit(bytes)
        }
      }
      if (newline === -1) return
      start = newline + 1
    }
  }

  /** Flushes a final line that had no terminating newline, and forgets any partial state. */
  end(): void {
    const bytes =
      this.#pending.length === 0 ? undefined : Buffer.concat(this.#pending, this.#pendingBytes)
    this.#reset()
    this.#skipping = false
    if (bytes) this.#emit(bytes)
  }

  #reset(): void {
    this.#pending = []
    this.#pendingBytes = 0
  }

  // Lines are decoded only once complete: `\n` never occurs inside a multi-byte UTF-8
  // sequence, so a character split across chunks is always whole here.
  #emit(bytes: Buffer): void {
    const length =
      bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length
    if (length === 0) return
    this.#onLine(bytes.toString('utf8', 0, length))
  }
}

/**
 * Makes a JSON text one stdio line. Raw line breaks in valid JSON can only be insignificant
 * whitespace (inside strings they must be escaped), so replacing them with spaces keeps the
 * meaning while keeping pretty-printed output from breaking the framing.
 */
export const serializeLine = (json: string): string =>
  (/[\r\n]/.test(json) ? json.replace(/[\r\n]/g, ' ') : json) + '\n'
