// The failover engine, from outside: the queue (engine.ts) that decides through pure
// functions (decide.ts), carries out through the execution (execute.ts) and records every
// state change through the Decisions port (decisions.ts; registry-decisions.ts with one peer).
export { FailoverEngine } from './engine.js';
export { RegistryDecisions, applyDecision } from './registry-decisions.js';
export type { Decision, Decisions, FailoverKind } from './decisions.js';
export type { FailoverRequest, FailoverResult, FailoverStatus, FailoverStep } from './types.js';
export type { CandidateChoice } from './candidate.js';
export type { BackendStatus } from '../backends/registry.js';
