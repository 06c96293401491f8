import { describe, expect, it } from 'vitest'
import { BridgeMetrics, errorTypeLabel, methodLabel } from './metrics.ts'

describe('label values', () => {
  it('keep MCP method names and count any other as _OTHER', () => {
    expect(methodLabel('tools/call')).toBe('tools/call')
    expect(methodLabel('notifications/cancelled')).toBe('notifications/cancelled')
    expect(methodLabel('x/'.repeat(50))).toBe('_OTHER')
  })

  it('keep JSON-RPC codes and Ferry outcomes, and count anything else as _OTHER', () => {
    for (const kept of ['-32700', '-32602', '-32000', '-32768', 'tool_error', 'cancelled']) {
      expect(errorTypeLabel(kept)).toBe(kept)
    }
    for (const other of ['-31999', '-32769', '1', '-3200000', 'boom', '']) {
      expect(errorTypeLabel(other)).toBe('_OTHER')
    }
  })
})

describe('BridgeMetrics', () => {
  it('serves every instrument in the Prometheus text format', async () => {
    const metrics = new BridgeMetrics({ serviceName: 'ferry-bridge', serviceVersion: '1.2.3' })
    metrics.observe({
      activeSessions: () => [['local', 3]],
      connections: () => 2,
      waitingStarts: () => [['local', 4]],
    })
    metrics.operation('tools/call', undefined, 0.004)
    metrics.operation('made/up', '-32601', 0.001)
    metrics.sessionStart('local', 'ok', 0.3)
    metrics.sessionStart('local', 'timeout', 30)
    metrics.sessionEnd('idle', 900)
    metrics.relayError('lost')
    metrics.evicted(5)
    const text = await metrics.scrape()
    for (const line of [
      'mcp_server_operation_duration_count{mcp_method_name="tools/call"} 1',
      'mcp_server_operation_duration_count{mcp_method_name="_OTHER",error_type="-32601"} 1',
      'mcp_server_operation_duration_bucket{mcp_method_name="tools/call",le="0.01"} 1',
      'ferry_session_start_duration_count{ferry_runtime="local",ferry_outcome="timeout"} 1',
      'ferry_sessions_started_total{ferry_runtime="local"} 1',
      'ferry_sessions_ended_total{ferry_session_end_reason="idle"} 1',
      'mcp_server_session_duration_sum{ferry_session_end_reason="idle"} 900',
      'ferry_relay_errors_total{ferry_relay_error="lost"} 1',
      'ferry_event_log_evictions_total 5',
      'ferry_sessions_active{ferry_runtime="local"} 3',
      'ferry_sidecar_connections 2',
      'ferry_session_starts_waiting{ferry_runtime="local"} 4',
    ]) {
      expect(text).toContain(`${line}\n`)
    }
    expect(text).toMatch(/^target_info\{.*service_name="ferry-bridge".*\} 1$/m)
    await metrics.shutdown()
  })
})
