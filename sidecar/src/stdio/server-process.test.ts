import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { afterEach, describe, it, expect } from 'vitest'
import { StdioServerProcess } from './server-process.ts'
import type { ServerExit, StdioLogger, StdioServerProcessOptions } from './server-process.ts'

interface Entry {
  level: 'warn' | 'info' | 'debug'
  obj: Record<string, unknown>
  msg: string | undefined
}

const capturingLogger = (): StdioLogger & { entries: Entry[] } => {
  const entries: Entry[] = []
  const log = (level: Entry['level']) => (obj: object, msg?: string) =>
    entries.push({ level, obj: obj as Record<string, unknown>, msg })
  return { entries, warn: log('warn'), info: log('info'), debug: log('debug') }
}

const servers: StdioServerProcess[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.stop('test cleanup')))
})

/** A server running `node -e script`, collecting its stdout lines. */
const nodeServer = (script: string, overrides: Partial<StdioServerProcessOptions> = {}) => {
  const logger = capturingLogger()
  const server = new StdioServerProcess({
    command: process.execPath,
    args: ['-e', script],
    env: { PATH: process.env.PATH },
    maxLineBytes: 1024 * 1024,
    stopGraceMs: 200,
    logger,
    ...overrides,
  })
  servers.push(server)
  const messages: string[] = []
  const waiters: Array<{ match: (line: string) => boolean; resolve: (line: string) => void }> = []
  server.onmessage = (line) => {
    messages.push(line)
    for (const waiter of waiters.filter((w) => w.match(line))) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.resolve(line)
    }
  }
  const exited = new Promise<ServerExit>((resolve) => (server.onexit = resolve))
  const nextMessage = (match: (line: string) => boolean = () => true) =>
    new Promise<string>((resolve) => {
      const seen = messages.find(match)
      if (seen !== undefined) resolve(seen)
      else waiters.push({ match, resolve })
    })
  return { server, logger, messages, exited, nextMessage }
}

/**
 * Whether a process is gone. This sandbox's init does not reap orphans, so a killed
 * grandchild can linger as a zombie: dead, yet still answering signal 0.
 */
const isGone = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true
    throw err
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

const waitUntil = async (condition: () => boolean, what: string, boundMs = 10_000) => {
  const deadline = Date.now() + boundMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const ECHO = `process.stdin.pipe(process.stdout)`

/** Spawns a grandchild that ignores SIGTERM and announces its pid on the shared stdout. */
const SPAWN_STUBBORN_GRANDCHILD = `
const { spawn } = require('node:child_process')
spawn(process.execPath, ['-e', ${JSON.stringify(
  `process.on('SIGTERM', () => {}); console.log(JSON.stringify({ grandchild: process.pid })); setInterval(() => {}, 1000)`
)}], { stdio: ['ignore', 'inherit', 'inherit'] })
`

describe('StdioServerProcess', () => {
  it('round-trips lines through a server that echoes stdin', async () => {
    const { server, messages, nextMessage } = nodeServer(ECHO)
    await server.start()
    expect(server.pid).toBeTypeOf('number')
    expect(server.send('{"jsonrpc":"2.0","id":1,"method":"ping"}\n')).toBe(true)
    server.send('{"jsonrpc":"2.0","id":2,"method":"ping"}\n')
    await nextMessage((line) => line.includes('"id":2'))
    expect(messages).toEqual([
      '{"jsonrpc":"2.0","id":1,"method":"ping"}',
      '{"jsonrpc":"2.0","id":2,"method":"ping"}',
    ])
    const exit = await server.stop('done')
    expect(server.exited).toEqual(exit)
    expect(() => server.send('{}\n')).toThrow('server process is not running')
  })

  it('runs the command with exactly the given environment and working directory', async () => {
    const { server, nextMessage } = nodeServer(
      `console.log(JSON.stringify({ env: process.env, cwd: process.cwd() }))`,
      { env: { PATH: process.env.PATH, FERRY_TEST_VALUE: 'kept' }, cwd: tmpdir() }
    )
    await server.start()
    const { env, cwd } = JSON.parse(await nextMessage()) as {
      env: Record<string, string>
      cwd: string
    }
    expect(env.FERRY_TEST_VALUE).toBe('kept')
    expect(Object.keys(env).filter((key) => key !== 'PATH' && !key.startsWith('FERRY_'))).toEqual(
      []
    )
    expect(cwd).toBe(tmpdir())
  })

  it('delivers a line the server writes in several chunks as one line', async () => {
    const text = '{"jsonrpc":"2.0","id":1,"result":{"text":"héllo 🚢"}}'
    const { server, messages, exited } = nodeServer(`
      const bytes = Buffer.from(${JSON.stringify(text + '\n')})
      const e = bytes.indexOf(Buffer.from('é')) + 1
      const ship = bytes.indexOf(Buffer.from('🚢')) + 2
      process.stdout.write(bytes.subarray(0, e))
      setTimeout(() => {
        process.stdout.write(bytes.subarray(e, ship))
        setTimeout(() => process.stdout.write(bytes.subarray(ship)), 50)
      }, 50)
    `)
    await server.start()
    expect((await exited).code).toBe(0)
    expect(messages).toEqual([text])
  })

  it('skips and reports an oversize line, then delivers the next one', async () => {
    const { server, logger, messages, exited } = nodeServer(
      `process.stdout.write('x'.repeat(5000) + '\\n' + '{"ok":true}\\n')`,
      { maxLineBytes: 1024 }
    )
    const oversize: number[] = []
    server.onoversize = (bytes) => oversize.push(bytes)
    await server.start()
    await exited
    expect(oversize).toHaveLength(1)
    expect(oversize[0]).toBeGreaterThan(1024)
    expect(messages).toEqual(['{"ok":true}'])
    expect(logger.entries.some((e) => e.level === 'warn' && e.obj.bytes === oversize[0])).toBe(true)
  })

  it('kills a server that ignores SIGTERM after the grace period', async () => {
    const { server, nextMessage, exited } = nodeServer(
      `process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)`
    )
    await server.start()
    await nextMessage((line) => line === 'ready')
    const stopped = server.stop('test')
    expect(server.stop('again')).toBe(stopped)
    const exit = await stopped
    expect(exit).toEqual({ code: null, signal: 'SIGKILL' })
    expect(await exited).toEqual(exit)
  })

  it('kills the whole process tree on stop()', async () => {
    const { server, nextMessage } = nodeServer(`${SPAWN_STUBBORN_GRANDCHILD}
      setInterval(() => {}, 1000)`)
    await server.start()
    const { grandchild } = JSON.parse(await nextMessage((l) => l.includes('grandchild'))) as {
      grandchild: number
    }
    expect(isGone(grandchild)).toBe(false)
    const exit = await server.stop('test')
    expect(exit.signal).toBe('SIGTERM')
    await waitUntil(() => isGone(grandchild), 'the grandchild to die')
  })

  it('cleans up what a server left behind when it exits by itself', async () => {
    const { server, nextMessage, exited } = nodeServer(`${SPAWN_STUBBORN_GRANDCHILD}
      process.stdin.on('data', () => process.exit(0))`)
    await server.start()
    const { grandchild } = JSON.parse(await nextMessage((l) => l.includes('grandchild'))) as {
      grandchild: number
    }
    server.send('exit\n')
    expect(await exited).toEqual({ code: 0, signal: null })
    await waitUntil(() => isGone(grandchild), 'the grandchild to die')
  })

  it('stops even when a process that left the group keeps stdout open', async () => {
    const { server, logger, nextMessage } = nodeServer(`
      const { spawn } = require('node:child_process')
      spawn(process.execPath, ['-e', ${JSON.stringify(
        `console.log(JSON.stringify({ escaped: process.pid })); setInterval(() => {}, 1000)`
      )}], { detached: true, stdio: ['ignore', 'inherit', 'inherit'] })
      setInterval(() => {}, 1000)
    `)
    await server.start()
    const { escaped } = JSON.parse(await nextMessage((l) => l.includes('escaped'))) as {
      escaped: number
    }
    try {
      expect(await server.stop('test')).toEqual({ code: null, signal: 'SIGTERM' })
      expect(logger.entries.some((e) => e.msg?.includes('still open'))).toBe(true)
    } finally {
      process.kill(escaped, 'SIGKILL')
    }
  })

  it('stops a server blocked on output while output is paused', async () => {
    // The point is that SIGTERM alone ends a server blocked in a write. A loaded machine can
    // take longer than the usual 200 ms to run the dying server, so the grace before SIGKILL is
    // long here; the test still ends as soon as the server does.
    const { server, nextMessage } = nodeServer(
      `
      const pad = 'x'.repeat(16 * 1024)
      console.log('ready')
      process.stdin.once('data', () => {
        for (let i = 0; i < 1000; i++) process.stdout.write(JSON.stringify({ i, pad }) + '\\n')
      })
    `,
      { stopGraceMs: 5_000 }
    )
    await server.start()
    await nextMessage((line) => line === 'ready')
    server.pauseOutput()
    server.send('go\n')
    const exit = await server.stop('test')
    expect(exit).toEqual({ code: null, signal: 'SIGTERM' })
  })

  it('reports the exit code when the server exits by itself', async () => {
    const { server, exited } = nodeServer(`process.exit(3)`)
    await server.start()
    const exit = await exited
    expect(exit).toEqual({ code: 3, signal: null })
    expect(server.exited).toEqual(exit)
    expect(await server.stop('after exit')).toEqual(exit)
    expect(() => server.send('{}\n')).toThrow('server process is not running')
  })

  it('rejects start() with a message naming a missing command', async () => {
    const logger = capturingLogger()
    const server = new StdioServerProcess({
      command: '/nonexistent/ferry-missing-server',
      args: [],
      env: {},
      maxLineBytes: 1024,
      stopGraceMs: 200,
      logger,
    })
    servers.push(server)
    let exitCalls = 0
    server.onexit = () => exitCalls++
    await expect(server.start()).rejects.toThrow('/nonexistent/ferry-missing-server')
    expect(server.exited?.error).toContain('/nonexistent/ferry-missing-server')
    expect(await server.stop()).toEqual(server.exited)
    expect(exitCalls).toBe(0)
  })

  it('logs stderr line by line', async () => {
    const { server, logger, exited } = nodeServer(
      `process.stderr.write('hello\\r\\nwor'); setTimeout(() => process.stderr.write('ld\\nlast'), 50)`
    )
    await server.start()
    await exited
    const lines = logger.entries
      .filter((e) => e.level === 'info' && e.obj.stream === 'stderr')
      .map((e) => e.obj.line)
    expect(lines).toEqual(['hello', 'world', 'last'])
  })

  it('rate-limits stderr and reports what it dropped', async () => {
    const { server, logger, exited } = nodeServer(
      `process.stderr.write(Array.from({ length: 50 }, (_, i) => 'line ' + i + '\\n').join(''))`,
      { stderrLinesPerSecond: 5 }
    )
    await server.start()
    await exited
    const forwarded = logger.entries.filter((e) => e.level === 'info' && e.obj.stream === 'stderr')
    const dropped = logger.entries
      .filter((e) => e.level === 'warn' && typeof e.obj.dropped === 'number')
      .map((e) => e.obj.dropped as number)
    expect(forwarded.length).toBeGreaterThanOrEqual(5)
    expect(dropped.length).toBeGreaterThan(0)
    expect(forwarded.length + dropped.reduce((a, b) => a + b, 0)).toBe(50)
  })

  it('signals backpressure on stdin and fires ondrain once the server reads', async () => {
    const { server, nextMessage } = nodeServer(`
      process.on('SIGUSR1', () => process.stdin.on('data', () => {}))
      console.log('ready')
      setInterval(() => {}, 1000)
    `)
    await server.start()
    await nextMessage((line) => line === 'ready')
    const line = JSON.stringify({ pad: 'x'.repeat(64 * 1024 - 12) }) + '\n'
    let accepted = true
    for (let i = 0; i < 1000 && accepted; i++) accepted = server.send(line)
    expect(accepted).toBe(false)
    const drained = new Promise<void>((resolve) => (server.ondrain = resolve))
    process.kill(server.pid!, 'SIGUSR1')
    await drained
    expect(server.send('{}\n')).toBe(true)
  })

  it('delivers every line across pauseOutput() and resumeOutput()', async () => {
    const { server, messages, exited } = nodeServer(`
      const pad = 'x'.repeat(16 * 1024)
      process.stdin.once('data', () => {
        for (let i = 0; i < 200; i++) process.stdout.write(JSON.stringify({ i, pad }) + '\\n')
        // Not process.exit(): that drops stdout writes still queued behind a full pipe.
        process.stdin.destroy()
      })
    `)
    await server.start()
    server.pauseOutput()
    server.send('go\n')
    server.resumeOutput()
    await exited
    expect(messages.map((line) => (JSON.parse(line) as { i: number }).i)).toEqual(
      Array.from({ length: 200 }, (_, i) => i)
    )
  })
})
