// Shared fixtures for the watchdog rule tests: a three-backend cluster state and views.
import { apply, initialState, type ClusterCommand, type ClusterState } from '../../src/cluster/state.js';
import type { AgedView, PeerView } from '../../src/cluster/view.js';

export const PEERS = ['a', 'b', 'c'];

/** Backend 0 primary, 1 and 2 standbys, all up; `a` coordinator of term 2. */
export function upState(): ClusterState {
  let s = initialState({ backends: [{ weight: 1 }, { weight: 1 }, { weight: 2 }] as never });
  const cmds: ClusterCommand[] = [
    { type: 'coordinator', peer: 'a', at: 1 },
    { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: 0, status: 'up', role: 'primary', reason: 'primary found' } },
    { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: 1, status: 'up', role: 'standby', reason: 'standby found' } },
    { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: 2, status: 'up', role: 'standby', reason: 'standby found' } },
  ];
  cmds.forEach((c, i) => (s = apply(s, c, { index: i + 1, term: 2 }).state));
  return s;
}

/** Applies commands in order from the state's next index, in `term`. */
export function applyAll(s: ClusterState, term: number, ...cmds: ClusterCommand[]): ClusterState {
  for (const c of cmds) s = apply(s, c, { index: s.index + 1, term }).state;
  return s;
}

/** A view of peer `peer` in which the listed backends are down (others up), `ageMs` old. */
export function view(peer: string, down: number[], ageMs = 0, extra: Partial<PeerView['status']> = {}, unknown: number[] = []): AgedView {
  return {
    ageMs,
    view: {
      peer,
      seq: 1,
      startedAt: 1,
      backends: [0, 1, 2].map((id) => ({ id, health: unknown.includes(id) ? 'unknown' : down.includes(id) ? 'down' : 'up', role: 'unknown', lsn: null, since: 0 })),
      status: { proxyUp: true, sessions: 0, version: 'test', priority: 0, state: 'STANDBY', ...extra },
    },
  };
}

export function views(...vs: AgedView[]): Map<string, AgedView> {
  return new Map(vs.map((v) => [v.view.peer, v]));
}
