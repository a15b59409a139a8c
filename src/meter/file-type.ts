/**
 * The file types usage is broken down by (a report's `file_types`,
 * docs/report-format.md). The order is fixed: the compact delta map stores
 * a type as its index in this list.
 */
export const FILE_TYPES = ['m3u8', 'ts', 'm4s', 'mp4', 'key', 'vtt', 'aac', 'static', 'default'] as const

/** One of {@link FILE_TYPES}. */
export type FileType = typeof FILE_TYPES[number]

const DEFAULT_INDEX = FILE_TYPES.length - 1

const INDEX: Readonly<Record<string, number>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, number>,
    Object.fromEntries(FILE_TYPES.map((t, i) => [t, i])))
)

/** Index of `type` in {@link FILE_TYPES}; anything unknown counts as `default`. */
export function fileTypeIndex (type: string | undefined): number {
  return (type === undefined ? undefined : INDEX[type]) ?? DEFAULT_INDEX
}
