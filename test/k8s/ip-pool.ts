/**
 * @module test/k8s/ip-pool
 *
 * Pod IPs for the kubelet simulator: each pod gets its own loopback address `<prefix>N` (all of
 * 127/8 reaches `lo` on Linux), lowest free N first, so a sidecar binds exactly where the bridge
 * dials and freed addresses get reused like real pod IPs. An address whose ports are already
 * taken (say, by another test process using the same prefix) is skipped.
 */
import { createServer } from 'node:net'

const portFree = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)))
  })

export class IpPool {
  private readonly prefix: string
  private readonly first: number
  private readonly last: number
  private readonly used = new Set<number>()

  constructor(prefix = '127.0.0.', first = 2, last = 254) {
    this.prefix = prefix
    this.first = first
    this.last = last
  }

  /** The lowest free address whose `ports` can all be bound; throws when the pool is empty. */
  async allocate(ports: number[] = []): Promise<string> {
    for (let n = this.first; n <= this.last; n++) {
      if (this.used.has(n)) continue
      this.used.add(n)
      const ip = `${this.prefix}${n}`
      const free = await Promise.all(ports.map((port) => portFree(ip, port)))
      if (free.every(Boolean)) return ip
      this.used.delete(n)
    }
    throw new Error(`no free pod IP left in ${this.prefix}${this.first}-${this.last}`)
  }

  release(ip: string | undefined) {
    if (!ip?.startsWith(this.prefix)) return
    this.used.delete(Number(ip.slice(this.prefix.length)))
  }

  get inUse(): string[] {
    return [...this.used].sort((a, b) => a - b).map((n) => `${this.prefix}${n}`)
  }
}
