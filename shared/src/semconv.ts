/**
 * @module
 * The OpenTelemetry semantic conventions for MCP that both the bridge and the sidecar record,
 * as plain strings. Copied from `@opentelemetry/semantic-conventions@1.45.0` (`/incubating`),
 * whose README asks instrumentations not to import incubating names at run time; copying also
 * keeps the sidecar bundle free of OpenTelemetry until tracing is turned on.
 */
import type { JSONRPCNotification, JSONRPCRequest, JSONRPCResponse } from './jsonrpc.ts'

export const ATTR_MCP_METHOD_NAME = 'mcp.method.name'
export const ATTR_MCP_SESSION_ID = 'mcp.session.id'
export const ATTR_MCP_PROTOCOL_VERSION = 'mcp.protocol.version'
export const ATTR_JSONRPC_REQUEST_ID = 'jsonrpc.request.id'
export const ATTR_GEN_AI_TOOL_NAME = 'gen_ai.tool.name'
export const ATTR_GEN_AI_PROMPT_NAME = 'gen_ai.prompt.name'
export const ATTR_GEN_AI_OPERATION_NAME = 'gen_ai.operation.name'
export const GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL = 'execute_tool'
export const ATTR_ERROR_TYPE = 'error.type'
export const ATTR_RPC_RESPONSE_STATUS_CODE = 'rpc.response.status_code'
export const ATTR_NETWORK_PROTOCOL_NAME = 'network.protocol.name'
export const ATTR_NETWORK_TRANSPORT = 'network.transport'
/** `error.type` of a tool result with `isError: true` (the MCP conventions' value). */
export const ERROR_TYPE_TOOL_ERROR = 'tool_error'
/** `error.type` value for anything outside a bounded set (the conventions' fallback). */
export const ERROR_TYPE_VALUE_OTHER = '_OTHER'

/** The tool or prompt a message is about: the `{target}` of its span name. */
const targetOf = (message: JSONRPCRequest | JSONRPCNotification): string | undefined => {
  if (message.method !== 'tools/call' && message.method !== 'prompts/get') return undefined
  const name = message.params?.name
  return typeof name === 'string' ? name : undefined
}

/** The span name the conventions give a message: `{mcp.method.name} {target}`. */
export const mcpSpanName = (message: JSONRPCRequest | JSONRPCNotification): string => {
  const target = targetOf(message)
  return target === undefined ? message.method : `${message.method} ${target}`
}

/** The conventions' attributes of a request or notification (method, request id, tool, prompt). */
export const mcpMessageAttributes = (
  message: JSONRPCRequest | JSONRPCNotification
): Record<string, string> => {
  const attributes: Record<string, string> = { [ATTR_MCP_METHOD_NAME]: message.method }
  if ('id' in message) attributes[ATTR_JSONRPC_REQUEST_ID] = String(message.id)
  const target = targetOf(message)
  if (target !== undefined) {
    if (message.method === 'tools/call') {
      attributes[ATTR_GEN_AI_TOOL_NAME] = target
      attributes[ATTR_GEN_AI_OPERATION_NAME] = GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL
    } else {
      attributes[ATTR_GEN_AI_PROMPT_NAME] = target
    }
  }
  return attributes
}

/**
 * The `error.type` of a response: its JSON-RPC error code as a string, `tool_error` for a tool
 * result with `isError: true`, undefined for success.
 */
export const responseErrorType = (response: JSONRPCResponse): string | undefined => {
  if ('error' in response) return String(response.error.code)
  return response.result.isError === true ? ERROR_TYPE_TOOL_ERROR : undefined
}
