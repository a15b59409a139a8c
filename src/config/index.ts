/**
 * Configuration (docs/configuration.md): one schema, read once at start from
 * flags, the environment, `.env` and the defaults.
 */
export { loadConfig, readDotEnv, readSetting } from './load.ts'
export type { ConfigWarning, Env, LoadConfigOptions, LoadedConfig } from './load.ts'
export {
  BOOLEAN_SETTINGS, CONFIG_DEFAULTS, DEMO_MEDIA_ROOT, LOG_LEVELS, SECRET_SETTINGS, SETTING_NAMES,
  configSchema, describeConfig, flagOf, redactStoreUrl, settingHelp, toMeterOptions
} from './schema.ts'
export type { Config, ConfigInput, OriginConfig, SettingName } from './schema.ts'
