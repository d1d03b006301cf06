export * from './schema.js';
export { loadConfig, parseConfig, ConfigError, formatPath } from './load.js';
