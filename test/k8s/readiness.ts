/**
 * @module test/k8s/readiness
 *
 * One readiness-probe attempt against the pod IP, as the kubelet makes it: `tcpSocket` succeeds
 * when a TCP connection opens, `httpGet` when a real GET answers 200–399. Marking a pod Ready
 * before its port accepts connections caused ECONNREFUSED races (notes §3c), hence real probing.
 */
import { request } from 'node:http'
import { connect } from 'node:net'
import type { V1Container, V1Probe } from '@kubernetes/client-node'

/** Resolves a probe port (number, numeric string, or the name of a container port). */
export const probePort = (
  port: number | string | undefined,
  container: V1Container
): number | undefined => {
  if (typeof port === 'number') return port
  if (port === undefined) return undefined
  if (/^\d+$/.test(port)) return Number(port)
  return container.ports?.find((candidate) => candidate.name === port)?.containerPort
}

const tcpOpen = (host: string, port: number, timeoutMs: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ host, port })
    const finish = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => finish(false))
    socket.once('connect', () => finish(true))
    socket.once('error', () => finish(false))
  })

const httpOk = (
  host: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  timeoutMs: number
) =>
  new Promise<boolean>((resolve) => {
    const req = request(
      {
        host,
        port,
        path,
        method: 'GET',
        agent: false,
        timeout: timeoutMs,
        headers: { 'User-Agent': 'kube-probe/1.36', ...headers },
      },
      (response) => {
        response.resume()
        const code = response.statusCode ?? 0
        resolve(code >= 200 && code < 400)
      }
    )
    req.once('timeout', () => req.destroy())
    req.once('error', () => resolve(false))
    req.end()
  })

/**
 * One probe attempt. Exec and gRPC probes are not modelled and count as passing, so a pod that
 * uses them becomes Ready as soon as it runs.
 */
export const probeOnce = async (
  probe: V1Probe,
  container: V1Container,
  podIP: string
): Promise<boolean> => {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000
  if (probe.tcpSocket) {
    const port = probePort(probe.tcpSocket.port, container)
    return port !== undefined && tcpOpen(probe.tcpSocket.host ?? podIP, port, timeoutMs)
  }
  if (probe.httpGet) {
    const port = probePort(probe.httpGet.port, container)
    const headers = Object.fromEntries(
      (probe.httpGet.httpHeaders ?? []).map((h) => [h.name, h.value])
    )
    return (
      port !== undefined &&
      httpOk(probe.httpGet.host ?? podIP, port, probe.httpGet.path ?? '/', headers, timeoutMs)
    )
  }
  return true
}
