/**
 * The metering library: pure TypeScript, no web framework, no database client.
 * Importable alone as `streammeter/meter`.
 */
export { FILE_TYPES, fileTypeIndex } from './file-type.ts'
export type { FileType } from './file-type.ts'
export type {
  DiscardedUsage, OutboxEntry, RenderedReport, StoreCounters, TrafficEvent, UsageDelta, UsagePolicy, UsageRecord
} from './types.ts'
export { isExpired, mergeDelta, unionCapped } from './usage-record.ts'
export type { MergeOutcome } from './usage-record.ts'
export { checkRendered, compareRecords, emptyCounters } from './usage-store.ts'
export type {
  ExpireResult, FlushResult, OutboxStats, SealRequest, SealResult, StoreDurability, UsageStore, UsageSummary
} from './usage-store.ts'
export { TrafficCollector, policyOf } from './collector.ts'
export type { CollectorDeps, CollectorState } from './collector.ts'
export { ManualClock, randomIds, systemClock } from './clock.ts'
export type { Clock, IdSource } from './clock.ts'
export { DeltaMap } from './delta-map.ts'
export { channels } from './diagnostics.ts'
export { silentLogger } from './logger.ts'
export type { MeterLogger } from './logger.ts'
export { METER_DEFAULTS, redactUrl, resolveMeterOptions } from './options.ts'
export type { MeterOptions } from './options.ts'
export { formatUtc, renderReports, round2, trafficDetail, unixSeconds } from './report-builder.ts'
export type { ReportContext, TrafficDetail, TrafficReport } from './report-builder.ts'
export { HttpReportTransport } from './report-transport.ts'
export type { DeliveryOutcome, HttpTransportOptions, ReportTransport } from './report-transport.ts'
export { Reporter } from './reporter.ts'
export type { DeliveryRun, ReporterOptions } from './reporter.ts'
export { retryDelayMs } from './backoff.ts'
export { buildTrafficStatus } from './traffic-status.ts'
export type { InstanceCounters, TrafficStatus } from './traffic-status.ts'
