import { describe, expect, it } from 'vitest'
import { mcpMessageAttributes, mcpSpanName, responseErrorType } from './semconv.ts'

describe('MCP semantic conventions', () => {
  const call = { jsonrpc: '2.0' as const, id: 4, method: 'tools/call', params: { name: 'echo' } }
  const prompt = { jsonrpc: '2.0' as const, id: 's', method: 'prompts/get', params: { name: 'p' } }
  const note = { jsonrpc: '2.0' as const, method: 'notifications/initialized' }

  it('names spans {mcp.method.name} {target}', () => {
    expect(mcpSpanName(call)).toBe('tools/call echo')
    expect(mcpSpanName(prompt)).toBe('prompts/get p')
    expect(mcpSpanName(note)).toBe('notifications/initialized')
    expect(mcpSpanName({ ...call, params: { name: 3 } })).toBe('tools/call')
  })

  it('gives requests, tools and prompts their attributes', () => {
    expect(mcpMessageAttributes(call)).toEqual({
      'mcp.method.name': 'tools/call',
      'jsonrpc.request.id': '4',
      'gen_ai.tool.name': 'echo',
      'gen_ai.operation.name': 'execute_tool',
    })
    expect(mcpMessageAttributes(prompt)).toEqual({
      'mcp.method.name': 'prompts/get',
      'jsonrpc.request.id': 's',
      'gen_ai.prompt.name': 'p',
    })
    expect(mcpMessageAttributes(note)).toEqual({ 'mcp.method.name': 'notifications/initialized' })
  })

  it("derives a response's error.type", () => {
    expect(responseErrorType({ jsonrpc: '2.0', id: 1, result: {} })).toBeUndefined()
    expect(responseErrorType({ jsonrpc: '2.0', id: 1, result: { isError: true } })).toBe(
      'tool_error'
    )
    expect(
      responseErrorType({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'x' } })
    ).toBe('-32602')
  })
})
