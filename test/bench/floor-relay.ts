/**
 * Benchmark-only: the least a sidecar can do, for the two-hop floor (see floor-bridge.ts). It
 * starts the stdio server given on its command line, accepts one WebSocket on a Unix socket,
 * writes each frame's payload to the server and sends each response back on the channel of
 * its request, in Ferry's frame format. No secret, event log, limits or logs.
 *
 * Usage: `node floor-relay.ts <socket> <command> [args…]`; prints `ready` once listening.
 */
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { rmSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { WebSocketServer, type WebSocket } from 'ws'

const [socket, command, ...args] = process.argv.slice(2)
if (!socket || !command) throw new Error('usage: floor-relay.ts <socket> <command> [args…]')
rmSync(socket, { force: true })

const server = spawn(command, args, { stdio: ['pipe', 'pipe', 'ignore'] })
const channels = new Map<unknown, number>()
let bridge: WebSocket | undefined

createInterface({ input: server.stdout }).on('line', (line) => {
  const { id } = JSON.parse(line) as { id?: unknown }
  const ch = channels.get(id)
  if (ch === undefined) return
  channels.delete(id)
  bridge?.send(`{"t":"ev","ch":${ch},"fin":1}\n${line}`)
})

const http = createServer()
new WebSocketServer({ server: http, perMessageDeflate: false, skipUTF8Validation: true }).on(
  'connection',
  (ws) => {
    bridge = ws
    ws.on('message', (data) => {
      const text = data.toString()
      const newline = text.indexOf('\n')
      const { ch } = JSON.parse(text.slice(0, newline)) as { ch: number }
      const payload = text.slice(newline + 1)
      const { id } = JSON.parse(payload) as { id?: unknown }
      if (id !== undefined) channels.set(id, ch)
      server.stdin.write(`${payload}\n`)
    })
  }
)
http.listen(socket, () => process.stdout.write('ready\n'))

// Exit through process.exit on SIGTERM, so that under `--cpu-prof` (the bench's profile phase)
// the profile is written.
process.once('SIGTERM', () => process.exit(0))
