/**
 * Session start on the Kubernetes runtime against the simulated cluster
 * (test/k8s): create the Job → the pod becomes Ready → the sidecar is dialled →
 * `initialize` answered, measured from the client as the initialize round trip.
 * The bridge runs in this process; pods are real local processes (sidecar + server-everything).
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { KubernetesRuntime, Keyring, serveBridge } from '@ferry/bridge'
import { CatalogSchema, silentLogger } from '@ferry/shared'
import { startSimulatedCluster } from '../k8s/cluster.ts'
import { everythingServer } from './contenders.ts'
import { createAgent, McpHttpSession } from './mcp-http-client.ts'
import { type LatencySummary, summarize } from './stats.ts'

const here = dirname(fileURLToPath(import.meta.url))

export interface KubernetesStart {
  sessions: number
  latency: LatencySummary
}

export const runKubernetesStart = async (sessions: number): Promise<KubernetesStart> => {
  const cluster = await startSimulatedCluster({
    namespace: 'ferry-sessions',
    kubelet: { ipPrefix: '127.0.90.' },
  })
  const runtime = new KubernetesRuntime({
    kubeConfig: cluster.kubeconfig,
    namespaces: ['ferry-sessions'],
    sweepIntervalMs: 0,
    logger: silentLogger,
    sidecarPath: join(here, '../../sidecar/dist/sidecar.mjs'),
  })
  const catalog = CatalogSchema.parse({
    bridge: { host: '127.0.0.1', port: 0, logLevel: 'silent' },
    defaultServer: 'everything',
    servers: {
      everything: {
        runtime: 'kubernetes',
        namespace: 'ferry-sessions',
        image: 'ghcr.io/ferry-mcp/sidecar:0.1.0',
        nodePath: process.execPath,
        command: everythingServer,
        startTimeout: '30s',
      },
    },
  })
  const bridge = await serveBridge({
    catalog,
    keyring: await Keyring.generate(),
    logger: silentLogger,
    runtimes: { kubernetes: runtime },
  })
  const agent = createAgent(8)
  const samples: number[] = []
  try {
    for (let i = 0; i < sessions; i++) {
      const session = new McpHttpSession(`http://127.0.0.1:${bridge.port}/mcp`, agent)
      const t0 = performance.now()
      await session.open()
      samples.push(performance.now() - t0)
      await session.close()
    }
  } finally {
    agent.destroy()
    await bridge.stop()
    await cluster.stop()
  }
  return { sessions, latency: summarize(samples) }
}
