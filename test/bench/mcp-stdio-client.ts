/**
 * The floor: an MCP client talking NDJSON straight to the server's stdio, with
 * no bridge at all.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { BENCH_PROTOCOL_VERSION } from './mcp-http-client.ts'

export class McpStdioSession {
  readonly child: ChildProcess
  private readonly pending = new Map<
    number,
    (message: { result?: unknown; error?: unknown }) => void
  >()
  private nextId = 1

  constructor(command: string, args: string[]) {
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] })
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const message = JSON.parse(line) as { id?: number; result?: unknown; error?: unknown }
      if (typeof message.id !== 'number') return
      this.pending.get(message.id)?.(message)
      this.pending.delete(message.id)
    })
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, (message) =>
        message.error ? reject(new Error(JSON.stringify(message.error))) : resolve(message.result)
      )
      this.child.stdin!.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`)
    })
  }

  async open(): Promise<void> {
    await this.call('initialize', {
      protocolVersion: BENCH_PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'ferry-bench', version: '1.0.0' },
    })
    this.child.stdin!.write(
      `${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`
    )
  }

  echo(message: string): Promise<unknown> {
    return this.call('tools/call', { name: 'echo', arguments: { message } })
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    this.child.stdin!.end()
    this.child.kill('SIGTERM')
    await exited
  }
}
