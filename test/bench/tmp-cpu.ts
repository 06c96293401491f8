import { readFileSync } from 'node:fs'
import { starters } from './contenders.ts'
const ticks = (pid: number) => {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}
for (const name of process.argv.slice(2)) {
  const c = await starters[name]!()
  const s = c.session()
  await s.open()
  for (let i = 0; i < 500; i++) await s.echo('x')
  const pids = c.pids()
  const before = pids.map(ticks)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const N = 5000
  for (let i = 0; i < N; i++) await s.echo('hello')
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const after = pids.map(ticks)
  console.log(
    name,
    'per request',
    ((ms / N) * 1000).toFixed(0),
    'µs wall; client',
    ((cpu.user + cpu.system) / N).toFixed(0),
    'µs cpu'
  )
  pids.forEach((p, i) =>
    console.log(
      '   pid',
      p,
      (((after[i]! - before[i]!) * 10000) / N).toFixed(0),
      'µs cpu/req',
      readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ').slice(40, 100)
    )
  )
  await s.close()
  await c.stop()
}
