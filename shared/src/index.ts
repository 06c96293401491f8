/**
 * @module
 * What the bridge and the sidecar share: the frame protocol between them,
 * JSON-RPC helpers, SSE event ids, the catalog schema, logging and trace-context helpers.
 */
export {
  type ClassifiedMessage,
  type JSONRPCErrorObject,
  type JSONRPCErrorResponse,
  type JSONRPCId,
  type JSONRPCMessage,
  type JSONRPCNotification,
  type JSONRPCRequest,
  type JSONRPCResponse,
  type JSONRPCResultResponse,
  ErrorCode,
  classifyMessage,
  errorResponse,
  metaOf,
  progressTokenOf,
} from './jsonrpc.ts'
export {
  type BridgeFrameHeader,
  type EventFrame,
  type ExitFrame,
  type ExitReason,
  type Frame,
  type FrameErrorCode,
  type SidecarFrameHeader,
  FRAME_PROTOCOL,
  UpgradeHeader,
  decodeBridgeFrame,
  decodeSidecarFrame,
  encodeFrame,
} from './frames.ts'
export {
  STANDALONE_STREAM,
  formatEventId,
  parseEventId,
  requestIdOfStream,
  requestStreamKey,
} from './event-id.ts'
export {
  type LogLevel,
  LOG_LEVELS,
  type Logger,
  type LoggerOptions,
  createLogger,
  silentLogger,
} from './logger.ts'
export {
  type BridgeSettings,
  type Catalog,
  type CatalogIssue,
  type KubernetesServerConfig,
  type LocalServerConfig,
  type ServerConfig,
  BridgeSettingsSchema,
  CatalogError,
  CatalogSchema,
  KubernetesServerSchema,
  LocalServerSchema,
  ServerSchema,
  defaultCatalog,
  loadCatalogFile,
  parseCatalog,
} from './catalog.ts'
export { parseDuration, parseSize } from './units.ts'
export {
  type TraceFields,
  type Traceparent,
  formatTraceparent,
  parseTraceparent,
  traceContextOf,
  traceLogFields,
  withTraceContext,
} from './trace-context.ts'
export { type OtlpSignal, otlpExportConfigured, otlpProtocol } from './otel-env.ts'
export {
  ATTR_ERROR_TYPE,
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROMPT_NAME,
  ATTR_GEN_AI_TOOL_NAME,
  ATTR_JSONRPC_REQUEST_ID,
  ATTR_MCP_METHOD_NAME,
  ATTR_MCP_PROTOCOL_VERSION,
  ATTR_MCP_SESSION_ID,
  ATTR_NETWORK_PROTOCOL_NAME,
  ATTR_NETWORK_TRANSPORT,
  ATTR_RPC_RESPONSE_STATUS_CODE,
  ERROR_TYPE_TOOL_ERROR,
  ERROR_TYPE_VALUE_OTHER,
  GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL,
  mcpMessageAttributes,
  mcpSpanName,
  responseErrorType,
} from './semconv.ts'
export { sidecarVerifier } from './verifier.ts'
export {
  type AccessSettings,
  type AuthMode,
  type AuthSettings,
  type BearerAuthSettings,
  type JwtAlgorithm,
  type JwtAuthSettings,
  type LimitsSettings,
  type NoAuthSettings,
  type ProtectedResourceSettings,
  type PublicJwks,
  type ServerLimitsSettings,
  type StaticTokenSettings,
  AccessSchema,
  AuthSettingsSchema,
  JWT_ALGORITHMS,
  LimitsSchema,
  ServerAuthSchema,
  ServerLimitsSchema,
} from './catalog-security.ts'
