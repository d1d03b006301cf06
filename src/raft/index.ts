// Public API of the Raft package: a pure consensus core, durable storage, and (for tests
// and `npm run sim`) a deterministic simulator.
//
// LOOP CONTRACT for a runtime (src/cluster) driving one RaftNode:
//
//   const storage = new DiskStorage<Cmd, State>(dir);
//   const node = new RaftNode<Cmd, State>({ id, peers, electionTicks: 10, heartbeatTicks: 1,
//                                           random: Math.random }, storage.load());
//   // restore the state machine from storage.load().snapshot, if any
//   every tick_ms:            node.tick(); drain();
//   on a message from a peer: node.step(msg); drain();   // msg is the plain JSON object sent
//   to propose:               node.propose(cmd) (null: not leader); drain();
//
//   function drain() {
//     while (node.hasReady()) {
//       const rd = node.ready();                 // exactly one ready() per advance()
//       storage.save(rd);                        // snapshot, entries, hard state; fsync'd
//       for (const m of rd.messages) send(m.to, m);   // only AFTER save: persist before send
//       if (rd.snapshot) restoreStateMachine(rd.snapshot.data);
//       for (const e of rd.committedEntries) if (e.data !== null) apply(e.data);  // null = no-op
//       node.advance(rd);
//       if (timeToCompact) storage.compact(node.compact(appliedIndex, captureState()));
//     }
//   }
//
// Entry payloads (T) and snapshot state (S) are opaque to the core but must be plain
// JSON-serialisable values (objects, strings, numbers; bytes as base64), because messages
// and DiskStorage records are JSON. Validate messages from the wire before step().
// Do not call step/tick/propose between ready() and advance() (buffer incoming messages
// while persisting). Messages may be lost, duplicated or reordered by the transport; the
// core copes. After a restart the committed entries after the stored snapshot are handed
// out again in committedEntries, so the state machine is rebuilt from snapshot + log.
//
// COORDINATOR CHECK: node.hasLease() / node.leaseValidUntilTick(). A leader holds a lease
// only once an entry of its term is committed and while a majority has acknowledged a
// heartbeat recently; until the lease ends no other node can become leader. This relies
// on peers' tick rates differing by less than about 12% at the defaults (leaseTicks =
// electionTicks - 1 - ceil(electionTicks/10)), and on a paused process catching up on
// missed ticks when it resumes rather than silently dropping them (a leader whose clock
// runs slow would believe its lease longer than it is). See RaftNode.leaseValidUntilTick.
export { RaftNode, type RaftConfig, type RaftInitialState } from './core/raft.js';
export type {
  Entry,
  HardState,
  Message,
  MessageType,
  NodeId,
  Ready,
  Role,
  Snapshot,
  SnapshotMeta,
  SoftState,
  Status,
} from './core/types.js';
export type { RaftStorage, StoredState } from './storage/storage.js';
export { EMPTY_HARD_STATE } from './storage/storage.js';
export { MemoryStorage } from './storage/memory-storage.js';
export { DiskStorage, StorageCorruptionError } from './storage/disk-storage.js';
