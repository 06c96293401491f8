/**
 * @module
 * What the bridge and the sidecar share: the frame protocol between them,
 * JSON-RPC helpers, SSE event ids, the catalog schema and logging.
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
export { sidecarVerifier } from './verifier.ts'
