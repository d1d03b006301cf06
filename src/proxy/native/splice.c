// Native forwarding for sessions that run on one backend connection (splice.ts).
//
// Once a session is settled on the primary alone, the JavaScript session hands its two file
// descriptors (client, backend) to this module. One thread with its own epoll then moves
// bytes both ways with read(2)/write(2), as pgbouncer does: no JavaScript, no V8 entry per
// read, no Buffer per message. It scans message headers only as far as it must to know:
//   - when to give the session back (Terminate, `SHOW POOL_…`, anything it does not
//     understand), always at a client message boundary, after the backend's output has been
//     forwarded up to a message boundary, so the JavaScript side resumes from a clean state;
//   - how many responses the backend still owes (one ReadyForQuery per Query, Sync and
//     FunctionCall) and the transaction status of the last ReadyForQuery;
//   - which statements change session state (SET, RESET, LISTEN, UNLISTEN, PREPARE,
//     DEALLOCATE, DISCARD, DECLARE, CLOSE, CREATE, and every Parse of a named statement): those
//     go back to JavaScript, which records them (session-state.ts) so that a session can move
//     to a new primary with its state (proxy.failover_sessions) and answers SET pgwatchdog.…
//     itself. Only the first word is looked at, and only of statements that are no read;
//   - a FATAL the backend sends while nothing is asked of it (a shutdown, the postmaster gone):
//     not forwarded; the session goes back with it unread (R_BACKEND_ASYNC), and JavaScript
//     decides whether the client gets it or the session moves;
//   - the last unit the client sent while idle (a Query, or an extended batch up to its Sync;
//     nothing owed before it, no transaction open) until the first message of its reply: when
//     that first message is the FATAL a backend sends on finding the postmaster gone while it
//     waits to read its client (neverRan), the server never read the unit — had it run any of
//     it, that part's reply (ParseComplete, CommandComplete …) would come before the FATAL.
//     The FATAL is not forwarded; the session goes back with the unit's bytes as unforwarded
//     client input (R_BACKEND_REPLAY), and JavaScript moves the session to the new primary and
//     sends them there. Keeping costs no copy: the unit's bytes stay where they were read, the
//     read buffer is not rewound over them while they are kept (Dir.pinned), and a second unit,
//     any reply, or a unit larger than the buffer simply ends the keeping;
//   - pgpool's select_cnt, counted as the router counts it (classify below; texts it cannot
//     decide go back to JavaScript). The first word settles most statements (INSERT, UPDATE,
//     BEGIN … are never reads): those are counted and forwarded as their bytes arrive, however
//     long. Only a text that starts like a read (SELECT, WITH, VALUES, TABLE, SHOW) is held
//     until its end has arrived, then scanned whole — up to CLASSIFY_MAX bytes; a longer one
//     goes back to JavaScript. A read may call functions (count(*), now(), IN (…)); only a call
//     of one JavaScript named (watchCalls: writes, node-local reads, set_config) sends it back.
// A read that fills a direction's buffer waits until the other side has taken it: a slow
// reader stops the writer (backpressure both ways), and memory per session is fixed.
//
// Threading: the worker thread does all I/O under `mu`; the JavaScript thread takes `mu` to
// attach and to kill, and never touches a descriptor while it is attached. Give-backs reach
// JavaScript through a thread-safe function, in order, and carry the bytes read but not
// forwarded. Epoll events carry (slot, generation) so an event for a session that was killed
// in between is recognised and dropped.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <unistd.h>

#define BUF_SIZE (32 * 1024)
// A statement text that starts like a read is held and scanned whole here (select_cnt, SHOW
// POOL_…) up to this size; a longer one goes back to JavaScript, which reads all of it. Also
// how far the first word may lie in (after blanks, or a Parse's statement name). It must stay
// well below BUF_SIZE: what is held must fit the buffer.
#define CLASSIFY_MAX 8192
// select_cnt counters: each proxy in the process has its own range (splice.ts).
#define MAX_COUNTERS 4096
#define MAX_LARGE_MESSAGE 0x3fffffffu
#define MAX_SMALL_MESSAGE 10000u

// Why a session goes back (the numbers are part of the contract with splice.ts).
enum {
  R_NONE = 0,
  R_TERMINATE = 1,  // the client sent Terminate: at a boundary, not consumed
  R_LOCAL = 2,      // a Query or Parse JavaScript must see (SHOW POOL_…, or not classified here)
  R_FRONTEND = 3,   // a client message type or length JavaScript must judge
  R_CLIENT_EOF = 4, // the client closed, or reading/writing it failed
  R_BACKEND_EOF = 5,
  R_BACKEND_PROTO = 6, // the backend sent an impossible header
  R_RECALL = 7,        // JavaScript asked for the session back: at the next client message
  R_BACKEND_ASYNC = 8, // a FATAL nobody asked for, left unforwarded at the front of the backend's bytes
  R_BACKEND_REPLAY = 9, // the postmaster-exit FATAL came first in reply to the kept unit: both go back unforwarded, the unit from its first byte
};

// Frontend message types after startup: 1 small control message, 2 may be large.
static uint8_t FRONTEND[256];

typedef struct {
  uint8_t *buf;
  size_t w;     // written up to here
  size_t clear; // cleared for forwarding up to here (a message boundary, or mid-body)
  size_t r;     // read up to here
  uint32_t remaining; // body bytes of the message at `clear` not yet read
  int pinned;         // bytes from `pin` on stay in place (the kept unit, client side only)
  size_t pin;
} Dir;

typedef struct {
  uint32_t gen;
  int cfd, bfd;
  int counter; // index into selects, or -1
  Dir c2b, b2c;
  uint32_t cev, bev; // epoll interest now registered per descriptor
  int outstanding;   // ReadyForQuery messages the backend still owes
  uint8_t status;    // from the last ReadyForQuery
  int fatal;         // a FATAL or PANIC ErrorResponse was forwarded to the client
  int stop;          // why the client side stopped (R_TERMINATE..R_FRONTEND, R_RECALL), or 0
  int recall;        // JavaScript wants the session back before the next client message
  int batchOpen;     // the client's last message was part of an extended batch not yet ended by Sync
  int keep;          // the unit at c2b.pin: K_NONE, K_OPEN (still arriving) or K_SENT (whole, no reply yet)
  double id;         // the owner's key in splice.ts (its owners map), handed back with the give-back
} Sess;

typedef struct {
  double id;
  int reason;
  int err;
  int outstanding;
  int status;
  int fatal;
  int boundary; // both directions forwarded up to a message boundary
  int batchOpen; // the client stopped inside an extended batch (part of it was forwarded here)
  uint8_t *c2b;
  size_t c2bLen;
  uint8_t *b2c;
  size_t b2cLen;
} GiveBack;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int ep = -1;
static pthread_t worker;
static int started = 0;
static Sess **slots = NULL;
static uint32_t *gens = NULL;
static size_t nslots = 0;
static size_t live = 0;
static napi_threadsafe_function tsfn = NULL;
static double selects[MAX_COUNTERS];
// Functions whose call can make a read more (a write, a node-local read, set_config):
// lower-case names and name prefixes from JavaScript (splice.ts watchCalls: classify.ts's lists
// and every proxy's proxy.write_functions). A union only ever grows: a name too many sends a
// statement to JavaScript, which decides it right anyway. Written under `mu`.
#define NAME_MAX_LEN 63
typedef struct {
  char name[NAME_MAX_LEN + 1];
  size_t len;
  int prefix;
} CallName;
static CallName *calls = NULL;
static size_t ncalls = 0;
static int callsKnown = 0; // until watchCalls() runs, every call goes to JavaScript

static uint64_t token(size_t idx, uint32_t gen, int backendSide) {
  return ((uint64_t)gen << 32) | ((uint64_t)idx << 1) | (uint64_t)backendSide;
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static int blank(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

static int wordAt(const uint8_t *p, size_t n, size_t i, const char *word) {
  size_t k = 0;
  for (; word[k]; k++) {
    if (i + k >= n || (p[i + k] | 0x20) != (uint8_t)word[k]) return 0;
  }
  return 1;
}

static int identChar(uint8_t c) { return c >= 0x80 || c == '_' || c == '$' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

static int wordIs(const uint8_t *p, size_t n, const char *word) {
  size_t k = strlen(word);
  return n == k && wordAt(p, n, 0, word);
}

// True when a statement starting with this word may change session state JavaScript records
// (session-state.ts). Most statements fail the first-letter test.
static int changesSession(const uint8_t *f, size_t fn) {
  switch (f[0] | 0x20) {
  case 's': return wordIs(f, fn, "set");
  case 'r': return wordIs(f, fn, "reset");
  case 'l': return wordIs(f, fn, "listen");
  case 'u': return wordIs(f, fn, "unlisten");
  case 'p': return wordIs(f, fn, "prepare");
  case 'd': return wordIs(f, fn, "deallocate") || wordIs(f, fn, "discard") || wordIs(f, fn, "declare");
  case 'c': return wordIs(f, fn, "close") || wordIs(f, fn, "create");
  default: return 0;
  }
}

// What the first word of a statement text settles. The text starts at p; n bytes of it (or of
// what follows it) have arrived, all of them when `whole`; a NUL ends the text.
enum {
  W_MORE = -2,     // the first word has not all arrived yet
  W_JS = -1,       // JavaScript decides (a comment, '(', EXPLAIN, COPY …)
  W_NOT_READ = 0,  // never a read, whatever follows: counted at once
  W_READ_LIKE = 2, // may be a read (or SHOW POOL_…): classify() the whole text
};

static int firstWord(const uint8_t *p, size_t n, int whole) {
  size_t i = 0;
  while (i < n && blank(p[i])) i++;
  if (i == n) return whole ? W_READ_LIKE : W_MORE;
  if (p[i] == 0) return W_READ_LIKE; // the empty query (the router counts it as a read)
  if ((p[i] | 0x20) < 'a' || (p[i] | 0x20) > 'z') return W_JS;
  size_t w = i;
  while (w < n && identChar(p[w])) w++;
  if (w == n && !whole) return W_MORE;
  const uint8_t *f = p + i;
  size_t fn = w - i;
  if (wordIs(f, fn, "select") || wordIs(f, fn, "with") || wordIs(f, fn, "values") || wordIs(f, fn, "table") || wordIs(f, fn, "show")) return W_READ_LIKE;
  if (wordIs(f, fn, "explain") || wordIs(f, fn, "copy")) return W_JS; // a read or not by what follows (ANALYZE of what, TO STDOUT or FROM)
  if (changesSession(f, fn)) return W_JS;
  return W_NOT_READ; // no other statement is a read, alone or followed by others
}

// True when the '(' at p[k] cannot make a read more: it does not follow a function name, or
// follows one that is none of `calls`. A name is judged only when it is plain (ASCII letters,
// digits and '_', not starting with a digit); a quoted name, or anything else that ends in an
// identifier character, goes to JavaScript, whose tokenizer tells them apart.
static int harmlessParen(const uint8_t *p, size_t k) {
  size_t e = k;
  while (e > 0 && blank(p[e - 1])) e--;
  if (e == 0) return 1;
  if (!identChar(p[e - 1])) return p[e - 1] != '"'; // a subquery, a row, an expression; "quoted"(: a call
  size_t b = e;
  while (b > 0 && identChar(p[b - 1])) b--;
  size_t n = e - b;
  if (!callsKnown || n >= NAME_MAX_LEN || (p[b] >= '0' && p[b] <= '9')) return 0;
  char name[NAME_MAX_LEN + 1];
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[b + i];
    if (c == '$' || c >= 0x80) return 0;
    name[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
  }
  for (size_t i = 0; i < ncalls; i++) {
    const CallName *f = &calls[i];
    if (f->prefix ? n >= f->len && memcmp(name, f->name, f->len) == 0 : n == f->len && memcmp(name, f->name, n) == 0) return 0;
  }
  return 1;
}

// How a whole statement text whose first word is read-like (firstWord: W_READ_LIKE) counts for
// select_cnt, exactly as the router (router.ts, classify.ts) counts it: 1 a read, -1 not
// decided here (JavaScript classifies it: the session goes back). Only what is certain from the
// bytes alone is decided: SELECT/WITH/VALUES/TABLE/SHOW count as reads only when nothing in the
// text could make them more — no call of a function that matters (harmlessParen), no comment
// (a name may hide behind one), no second statement, no word FOR, INTO, INSERT, UPDATE, DELETE
// or MERGE (locks, SELECT INTO, data-modifying WITH), no pg_… name (node-local views and
// functions), not SHOW POOL_…/WATCHDOG_…. Anything of that kind, in a string or not, goes to
// JavaScript: the bytes are scanned raw, so a string only ever sends more there.
static int classify(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n && blank(p[i])) i++;
  if (i == n) return 1; // the empty query: the router counts it as a read (any server answers)
  size_t w = i;
  while (w < n && identChar(p[w])) w++;
  if (wordIs(p + i, w - i, "show")) {
    size_t j = w;
    while (j < n && blank(p[j])) j++;
    if (j > w && (wordAt(p, n, j, "pool") || wordAt(p, n, j, "watchdog"))) return -1; // SHOW POOL…/WATCHDOG…: JavaScript's (or not: it checks)
  }
  for (size_t k = w; k < n;) {
    uint8_t c = p[k];
    if (c == '(' && !harmlessParen(p, k)) return -1;
    if ((c == '-' || c == '/') && k + 1 < n && p[k + 1] == (c == '-' ? '-' : '*')) return -1;
    if (c == ';') {
      for (size_t j = k + 1; j < n; j++) if (!blank(p[j]) && p[j] != ';') return -1;
      return 1;
    }
    if (!identChar(c)) {
      k++;
      continue;
    }
    size_t e = k;
    while (e < n && identChar(p[e])) e++;
    const uint8_t *t = p + k;
    size_t tn = e - k;
    if (wordIs(t, tn, "for") || wordIs(t, tn, "into") || wordIs(t, tn, "insert") || wordIs(t, tn, "update") || wordIs(t, tn, "delete") || wordIs(t, tn, "merge")) return -1;
    if (tn >= 3 && (t[0] | 0x20) == 'p' && (t[1] | 0x20) == 'g' && t[2] == '_') return -1;
    k = e;
  }
  return 1;
}

// Clears what has arrived of the body of the message at `clear`.
static void clearBody(Dir *d) {
  size_t take = d->r - d->clear;
  if (take > d->remaining) take = d->remaining;
  d->clear += take;
  d->remaining -= (uint32_t)take;
}

// Clears what has arrived of the message starting at `clear` (header read: length `len`).
static void clearMessage(Dir *d, uint32_t len) {
  size_t avail = d->r - d->clear;
  size_t msg = (size_t)len + 1;
  size_t take = avail < msg ? avail : msg;
  d->clear += take;
  d->remaining = (uint32_t)(msg - take);
}

enum { K_MORE = -2, K_JS = -1 };

// The kept unit (see the top): none, still arriving, or whole and sent with no reply yet.
enum { KEEP_NONE = 0, KEEP_OPEN = 1, KEEP_SENT = 2 };

// What is kept now: fill() gives the unit up (unpins it) when it alone fills the buffer.
static int kept(const Sess *s) { return s->c2b.pinned ? s->keep : KEEP_NONE; }

static void unkeep(Sess *s) {
  s->keep = KEEP_NONE;
  s->c2b.pinned = 0;
}

// At each client message header, just before the message is cleared for forwarding (with
// `outstanding` and `batchOpen` as they stood before it): a unit starts being kept when
// nothing is owed, no batch is open and the last ReadyForQuery said idle; it is whole at its
// Query or Sync. A message after a whole unit, a FunctionCall or COPY data ends the keeping.
static void noteUnit(Sess *s, uint8_t type) {
  int k = kept(s);
  if (k == KEEP_SENT) unkeep(s), k = KEEP_NONE;
  if (type == 'F' || type == 'd' || type == 'c' || type == 'f') {
    if (k != KEEP_NONE) unkeep(s);
    return;
  }
  if (k == KEEP_NONE) {
    if (s->batchOpen || s->outstanding != 0 || s->status != 'I') return;
    s->keep = KEEP_OPEN;
    s->c2b.pinned = 1;
    s->c2b.pin = s->c2b.clear;
  }
  if (type == 'Q' || type == 'S') s->keep = KEEP_SENT;
}

// How the Query or Parse message at `m` (length `len`, `avail` bytes of it in the buffer) counts
// for select_cnt: 1 a read, 0 not, K_JS when JavaScript must decide, K_MORE when more of it must
// arrive first. Looks only as far as it must: to the end of the first word for most statements.
static int countQuery(const uint8_t *m, uint32_t len, size_t avail) {
  size_t body = (size_t)len - 4;
  size_t have = avail - 5 < body ? avail - 5 : body;
  int whole = have == body;
  const uint8_t *text = m + 5;
  size_t tn = have;
  if (m[0] == 'P') {
    // A named statement: JavaScript keeps its Parse, to re-Parse it after a move.
    if (have > 0 && text[0] != 0) return K_JS;
    if (have == 0) return K_MORE;
    // Skip the statement name (empty): its text follows.
    const uint8_t *z = memchr(text, 0, tn < CLASSIFY_MAX ? tn : CLASSIFY_MAX);
    if (!z) return whole || have >= CLASSIFY_MAX ? K_JS : K_MORE; // malformed: JavaScript judges it
    tn -= (size_t)(z + 1 - text);
    text = z + 1;
  }
  int w = firstWord(text, tn, whole);
  if (w == W_MORE) return have >= CLASSIFY_MAX ? K_JS : K_MORE;
  if (w != W_READ_LIKE) return w == W_JS ? K_JS : 0;
  // Read-like: the whole text (to its NUL), if it is no longer than CLASSIFY_MAX.
  const uint8_t *end = memchr(text, 0, tn <= CLASSIFY_MAX ? tn : CLASSIFY_MAX + 1);
  if (end) tn = (size_t)(end - text);
  else if (tn > CLASSIFY_MAX) return K_JS;
  else if (!whole) return K_MORE;
  return classify(text, tn) < 0 ? K_JS : 1;
}

// Clears bytes of `d` for forwarding from the client, stopping before a message JavaScript
// must handle.
static void scanClient(Sess *s) {
  Dir *d = &s->c2b;
  while (d->clear < d->r) {
    if (d->remaining > 0) {
      clearBody(d);
      continue;
    }
    if (s->recall) {
      s->stop = R_RECALL;
      return;
    }
    size_t avail = d->r - d->clear;
    if (avail < 5) return;
    const uint8_t *m = d->buf + d->clear;
    uint8_t type = m[0];
    uint32_t len = be32(m + 1);
    uint32_t max = FRONTEND[type] == 2 ? MAX_LARGE_MESSAGE : MAX_SMALL_MESSAGE;
    if (FRONTEND[type] == 0 || len < 4 || len > max) {
      s->stop = R_FRONTEND;
      return;
    }
    if (type == 'X') {
      s->stop = R_TERMINATE;
      return;
    }
    if (type == 'Q' || type == 'P') {
      int k = countQuery(m, len, avail);
      if (k == K_MORE) return; // wait for more of the text
      if (k == K_JS) {
        s->stop = R_LOCAL;
        return;
      }
      if (k == 1 && s->counter >= 0 && s->counter < MAX_COUNTERS) selects[s->counter]++;
    }
    noteUnit(s, type);
    if (type == 'Q' || type == 'S' || type == 'F') s->outstanding++;
    s->batchOpen = type != 'Q' && type != 'S' && type != 'F';
    clearMessage(d, len);
  }
}

// Whether field `type` of an ErrorResponse body (fields: type byte, C string; a zero byte ends
// them) is there and reads `want`; -1 when the field is absent.
static int fieldIs(const uint8_t *p, size_t n, uint8_t type, const char *want) {
  size_t i = 0;
  while (i < n && p[i] != 0) {
    uint8_t field = p[i++];
    const uint8_t *z = memchr(p + i, 0, n - i);
    if (!z) return -1;
    size_t len = (size_t)(z - (p + i));
    if (field == type) return len == strlen(want) && memcmp(p + i, want, len) == 0;
    i += len + 1;
  }
  return -1;
}

// Whether the severity is `want`: the untranslated V field, or S from a server without it.
static int severityIs(const uint8_t *p, size_t n, const char *want) {
  int v = fieldIs(p, n, 'V', want);
  return v >= 0 ? v : fieldIs(p, n, 'S', want) == 1;
}

// True when an ErrorResponse body has severity FATAL or PANIC: the backend ends the session
// after it.
static int fatalError(const uint8_t *p, size_t n) { return severityIs(p, n, "FATAL") || severityIs(p, n, "PANIC"); }

// True when an ErrorResponse body is the FATAL a backend sends when it finds the postmaster
// gone while it waits on its client (PostgreSQL's secure_read and secure_write: 57P01,
// "terminating connection due to unexpected postmaster exit"). Only that one proves, as the
// first message of a reply, that the request was never read; why the other shutdown errors
// do not is in src/proxy/never-ran.ts, which decides the same for the JavaScript path.
static int neverRan(const uint8_t *p, size_t n) {
  return severityIs(p, n, "FATAL") && fieldIs(p, n, 'C', "57P01") == 1 && fieldIs(p, n, 'M', "terminating connection due to unexpected postmaster exit") == 1;
}

// Clears backend output for forwarding, recording ReadyForQuery and whether an ErrorResponse
// ended the session (JavaScript then sends no error of its own: the client has the backend's).
// Once the client side has stopped, it clears no further than the end of the current message.
static void scanBackend(Sess *s) {
  Dir *d = &s->b2c;
  while (d->clear < d->r) {
    if (d->remaining > 0) {
      clearBody(d);
      continue;
    }
    if (s->stop) return;
    size_t avail = d->r - d->clear;
    if (avail < 5) return;
    const uint8_t *m = d->buf + d->clear;
    uint32_t len = be32(m + 1);
    if (len < 4 || len > MAX_LARGE_MESSAGE) {
      s->stop = R_BACKEND_PROTO;
      return;
    }
    if (kept(s) != KEEP_NONE) {
      // The first message since the kept unit went out: the reply has started, unless it is
      // the FATAL that proves the unit was never read.
      if (kept(s) == KEEP_SENT && m[0] == 'E' && (size_t)len + 1 <= BUF_SIZE) {
        if (avail < (size_t)len + 1) return;
        if (neverRan(m + 5, len - 4)) {
          s->stop = R_BACKEND_REPLAY;
          return;
        }
      }
      unkeep(s);
    }
    if (m[0] == 'Z') {
      if (avail < 6) return;
      s->status = m[5];
      if (s->outstanding > 0) s->outstanding--;
    } else if (m[0] == 'E' && (size_t)len + 1 <= BUF_SIZE) {
      // Read whole before it is forwarded (it fits the buffer; a larger one is not looked at).
      if (avail < (size_t)len + 1) return;
      if (fatalError(m + 5, len - 4)) {
        // Nothing asked of the backend: the FATAL is its own (shutdown, postmaster gone).
        // JavaScript reads it, unforwarded, and decides what the client sees.
        if (s->outstanding == 0 && !s->batchOpen && s->c2b.remaining == 0) {
          s->stop = R_BACKEND_ASYNC;
          return;
        }
        s->fatal = 1;
      }
    }
    clearMessage(d, len);
  }
}

// Writes what is cleared. Returns 0 when all of it went, 1 when the socket is full, -1 on error.
static int flush(Dir *d, int fd, int *err) {
  while (d->w < d->clear) {
    ssize_t n = send(fd, d->buf + d->w, d->clear - d->w, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      *err = errno;
      return -1;
    }
    d->w += (size_t)n;
  }
  // (Not rewound over a kept unit: its bytes stay where they are until it is given up.)
  if (d->w == d->r && !d->pinned) d->w = d->clear = d->r = 0;
  return 0;
}

// Reads once into the free space. Returns bytes read, 0 for nothing now, -1 at EOF/error.
static ssize_t fill(Dir *d, int fd, int *err) {
  // All written and nothing kept: read from the start (flush rewinds too, but not past a unit
  // kept then, whose reply has started since).
  if (d->w == d->r && !d->pinned) d->w = d->clear = d->r = 0;
  if (d->r == BUF_SIZE) {
    // Room at the front: what is written, but for bytes kept in place — unless they alone
    // fill the buffer, and then they are given up.
    size_t from = d->pinned && d->pin < d->w ? d->pin : d->w;
    if (from == 0 && d->pinned) {
      d->pinned = 0;
      from = d->w;
    }
    if (from > 0) {
      memmove(d->buf, d->buf + from, d->r - from);
      d->clear -= from;
      d->r -= from;
      d->w -= from;
      if (d->pinned) d->pin -= from;
    }
  }
  if (d->r == BUF_SIZE) return 0;
  for (;;) {
    ssize_t n = read(fd, d->buf + d->r, BUF_SIZE - d->r);
    if (n > 0) {
      d->r += (size_t)n;
      return n;
    }
    if (n == 0) return -1;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    *err = errno;
    return -1;
  }
}

static void release(size_t idx) {
  Sess *s = slots[idx];
  epoll_ctl(ep, EPOLL_CTL_DEL, s->cfd, NULL);
  epoll_ctl(ep, EPOLL_CTL_DEL, s->bfd, NULL);
  free(s->c2b.buf);
  free(s->b2c.buf);
  free(s);
  slots[idx] = NULL;
  gens[idx]++;
  live--;
}

static int atBoundary(const Sess *s) {
  return s->c2b.w == s->c2b.clear && s->c2b.remaining == 0 && s->b2c.w == s->b2c.clear && s->b2c.remaining == 0;
}

static uint8_t *copyOut(const Dir *d, size_t from, size_t *len) {
  *len = d->r - from;
  if (*len == 0) return NULL;
  uint8_t *p = malloc(*len);
  if (p) memcpy(p, d->buf + from, *len);
  else *len = 0;
  return p;
}

static void giveBack(size_t idx, int reason, int err) {
  Sess *s = slots[idx];
  GiveBack *g = calloc(1, sizeof(GiveBack));
  if (g) {
    g->id = s->id;
    g->reason = reason;
    g->err = err;
    // A unit going back for replay owes nothing: it was never read (its one ReadyForQuery).
    g->outstanding = reason == R_BACKEND_REPLAY ? s->outstanding - 1 : s->outstanding;
    g->batchOpen = s->batchOpen;
    g->status = s->status;
    g->fatal = s->fatal;
    g->boundary = atBoundary(s);
    // Bytes read but not forwarded, from the first byte not cleared: JavaScript takes over
    // from there (meaningful when `boundary`).
    // (For a replay, from the kept unit's first byte: it goes back as if never forwarded.)
    g->c2b = copyOut(&s->c2b, reason == R_BACKEND_REPLAY ? s->c2b.pin : s->c2b.clear, &g->c2bLen);
    g->b2c = copyOut(&s->b2c, s->b2c.clear, &g->b2cLen);
    // Out of memory for the leftovers: JavaScript cannot resume from here, so it ends the session.
    if ((!g->c2b && s->c2b.r > s->c2b.clear) || (!g->b2c && s->b2c.r > s->b2c.clear)) g->boundary = 0;
    if (napi_call_threadsafe_function(tsfn, g, napi_tsfn_nonblocking) != napi_ok) {
      free(g->c2b);
      free(g->b2c);
      free(g);
    }
  }
  release(idx);
}

static void interest(Sess *s, size_t idx) {
  // Read a side only while what was read from it has been written on (so a slow reader
  // holds back the writer), and it has not stopped; wait for writability while output waits.
  int c2bIdle = s->c2b.w == s->c2b.clear;
  int b2cIdle = s->b2c.w == s->b2c.clear;
  uint32_t cev = ((c2bIdle && !s->stop) ? EPOLLIN : 0) | (b2cIdle ? 0 : EPOLLOUT);
  uint32_t bev = (b2cIdle ? EPOLLIN : 0) | (c2bIdle ? 0 : EPOLLOUT);
  struct epoll_event ev;
  if (cev != s->cev) {
    ev.events = cev;
    ev.data.u64 = token(idx, s->gen, 0);
    epoll_ctl(ep, EPOLL_CTL_MOD, s->cfd, &ev);
    s->cev = cev;
  }
  if (bev != s->bev) {
    ev.events = bev;
    ev.data.u64 = token(idx, s->gen, 1);
    epoll_ctl(ep, EPOLL_CTL_MOD, s->bfd, &ev);
    s->bev = bev;
  }
}

// Moves what can be moved now for one session; gives it back when it must.
static void service(size_t idx, uint32_t events, int backendSide) {
  Sess *s = slots[idx];
  int err = 0;
  // A hang-up or error is reported whatever the interest, and again on every wait: the
  // connection is dead (a peer's plain close shows as readable, then EOF), so give it back.
  if (events & (EPOLLERR | EPOLLHUP)) {
    // What the backend sent before it went is still readable, and it may be what matters: a
    // backend that exits with the kept unit unread in its socket resets the connection, right
    // after the FATAL that proves it never read it. So read once more, and forward what can be.
    if (backendSide && !s->stop && s->b2c.w == s->b2c.clear) {
      int e2 = 0;
      if (fill(&s->b2c, s->bfd, &e2) > 0) {
        scanBackend(s);
        if (s->stop == R_BACKEND_REPLAY || s->stop == R_BACKEND_ASYNC) return giveBack(idx, s->stop, 0);
        if (s->stop == 0) flush(&s->b2c, s->cfd, &e2);
      }
    }
    socklen_t len = sizeof err;
    getsockopt(backendSide ? s->bfd : s->cfd, SOL_SOCKET, SO_ERROR, &err, &len);
    return giveBack(idx, backendSide ? R_BACKEND_EOF : R_CLIENT_EOF, err);
  }
  // Pending output first: it may free room to read.
  if (flush(&s->b2c, s->cfd, &err) < 0) return giveBack(idx, R_CLIENT_EOF, err);
  if (flush(&s->c2b, s->bfd, &err) < 0) return giveBack(idx, R_BACKEND_EOF, err);
  if (!backendSide) {
    if (!s->stop && s->c2b.w == s->c2b.clear) {
      ssize_t n = fill(&s->c2b, s->cfd, &err);
      if (n < 0) return giveBack(idx, R_CLIENT_EOF, err);
      if (n > 0) {
        scanClient(s);
        if (flush(&s->c2b, s->bfd, &err) < 0) return giveBack(idx, R_BACKEND_EOF, err);
      }
    }
  }
  if (backendSide || s->stop) {
    if (s->b2c.w == s->b2c.clear) {
      ssize_t n = fill(&s->b2c, s->bfd, &err);
      if (n < 0) return giveBack(idx, R_BACKEND_EOF, err);
      if (n > 0) {
        scanBackend(s);
        if (s->stop == R_BACKEND_PROTO) return giveBack(idx, R_BACKEND_PROTO, 0);
        if (flush(&s->b2c, s->cfd, &err) < 0) return giveBack(idx, R_CLIENT_EOF, err);
      }
    }
  }
  if (s->stop && atBoundary(s)) return giveBack(idx, s->stop, 0);
  interest(s, idx);
}

static void *run(void *arg) {
  (void)arg;
  struct epoll_event evs[128];
  for (;;) {
    int n = epoll_wait(ep, evs, 128, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return NULL;
    }
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n; i++) {
      uint64_t t = evs[i].data.u64;
      size_t idx = (size_t)((t & 0xffffffffu) >> 1);
      uint32_t gen = (uint32_t)(t >> 32);
      if (idx >= nslots || !slots[idx] || gens[idx] != gen) continue;
      service(idx, evs[i].events, (int)(t & 1));
    }
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

// ---- JavaScript side ----------------------------------------------------------------------

static void callJs(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  GiveBack *g = data;
  if (env && cb) {
    napi_value argv[10], undef;
    napi_create_double(env, g->id, &argv[0]);
    napi_create_int32(env, g->reason, &argv[1]);
    napi_create_int32(env, g->err, &argv[2]);
    napi_create_int32(env, g->outstanding, &argv[3]);
    napi_create_int32(env, g->status, &argv[4]);
    napi_get_boolean(env, g->boundary, &argv[5]);
    void *p;
    napi_create_buffer_copy(env, g->c2bLen, g->c2b ? (void *)g->c2b : (void *)"", &p, &argv[6]);
    napi_create_buffer_copy(env, g->b2cLen, g->b2c ? (void *)g->b2c : (void *)"", &p, &argv[7]);
    napi_get_boolean(env, g->fatal, &argv[8]);
    napi_get_boolean(env, g->batchOpen, &argv[9]);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 10, argv, NULL);
  }
  free(g->c2b);
  free(g->b2c);
  free(g);
}

static napi_value throwErr(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

// init(onGiveBack): starts the worker thread once.
static napi_value Init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (started) return NULL;
  if (argc < 1) return throwErr(env, "splice.init: a callback is required");
  napi_value name;
  napi_create_string_utf8(env, "pgwatchdog-splice", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, callJs, &tsfn) != napi_ok) {
    return throwErr(env, "splice.init: cannot create the thread-safe function");
  }
  // The worker must not keep the process alive: the proxy's own handles do.
  napi_unref_threadsafe_function(env, tsfn);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return throwErr(env, "splice.init: epoll_create1 failed");
  if (pthread_create(&worker, NULL, run, NULL) != 0) return throwErr(env, "splice.init: cannot start the forwarding thread");
  pthread_detach(worker);
  started = 1;
  return NULL;
}

static int getNumber(napi_env env, napi_value v, double *out) { return napi_get_value_double(env, v, out) == napi_ok; }

// attach(id, clientFd, backendFd, counter, status) → handle (a number), or throws. `status`
// is the transaction status of the backend's last ReadyForQuery, as JavaScript saw it: the
// session may be handed over inside a transaction.
static napi_value Attach(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id, cfd, bfd, counter, status;
  if (argc < 5 || !getNumber(env, argv[0], &id) || !getNumber(env, argv[1], &cfd) || !getNumber(env, argv[2], &bfd) || !getNumber(env, argv[3], &counter) ||
      !getNumber(env, argv[4], &status) || (status != 'I' && status != 'T' && status != 'E')) {
    return throwErr(env, "splice.attach(id, clientFd, backendFd, counter, status): numbers expected, status one of 'I', 'T', 'E' as a byte");
  }
  if (!started) return throwErr(env, "splice.attach: init() first");
  Sess *s = calloc(1, sizeof(Sess));
  uint8_t *a = malloc(BUF_SIZE), *b = malloc(BUF_SIZE);
  if (!s || !a || !b) {
    free(s);
    free(a);
    free(b);
    return throwErr(env, "splice.attach: out of memory");
  }
  s->id = id;
  s->cfd = (int)cfd;
  s->bfd = (int)bfd;
  s->counter = (int)counter;
  s->c2b.buf = a;
  s->b2c.buf = b;
  s->status = (uint8_t)status;
  s->cev = s->bev = EPOLLIN;
  pthread_mutex_lock(&mu);
  size_t idx = 0;
  while (idx < nslots && slots[idx]) idx++;
  if (idx == nslots) {
    size_t n = nslots ? nslots * 2 : 64;
    Sess **ns = realloc(slots, n * sizeof(Sess *));
    uint32_t *ng = ns ? realloc(gens, n * sizeof(uint32_t)) : NULL;
    if (ns) slots = ns;
    if (ng) gens = ng;
    if (!ns || !ng) {
      pthread_mutex_unlock(&mu);
      free(a);
      free(b);
      free(s);
      return throwErr(env, "splice.attach: out of memory");
    }
    for (size_t i = nslots; i < n; i++) {
      slots[i] = NULL;
      gens[i] = 0;
    }
    nslots = n;
  }
  s->gen = gens[idx] & 0xfffff;
  gens[idx] = s->gen;
  slots[idx] = s;
  live++;
  struct epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.u64 = token(idx, s->gen, 0);
  int e1 = epoll_ctl(ep, EPOLL_CTL_ADD, s->cfd, &ev);
  ev.data.u64 = token(idx, s->gen, 1);
  int e2 = e1 == 0 ? epoll_ctl(ep, EPOLL_CTL_ADD, s->bfd, &ev) : -1;
  if (e1 != 0 || e2 != 0) {
    int e = errno;
    release(idx);
    pthread_mutex_unlock(&mu);
    char msg[96];
    snprintf(msg, sizeof msg, "splice.attach: epoll_ctl failed: %s", strerror(e));
    return throwErr(env, msg);
  }
  // (Read before unlocking: the worker may give the session back, and free it, at once.)
  double handle = (double)s->gen * 4294967296.0 + (double)idx;
  pthread_mutex_unlock(&mu);
  napi_value h;
  napi_create_double(env, handle, &h);
  return h;
}

// The slot a handle names while its session is attached, else -1. Call under `mu`.
static long slotOf(double h) {
  size_t idx = (size_t)((uint64_t)h & 0xffffffffu);
  uint32_t gen = (uint32_t)((uint64_t)h >> 32);
  return idx < nslots && slots[idx] && gens[idx] == gen ? (long)idx : -1;
}

// kill(handle) → { outstanding, boundary, status } if the session was still attached, else null
// (its give-back is on the way). The descriptors are the caller's again at once.
static napi_value Kill(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double h;
  if (argc < 1 || !getNumber(env, argv[0], &h)) return throwErr(env, "splice.kill(handle): a number expected");
  pthread_mutex_lock(&mu);
  long idx = slotOf(h);
  if (idx >= 0) {
    Sess *s = slots[idx];
    napi_value o, v1, v2, v3;
    napi_create_object(env, &o);
    napi_create_int32(env, s->outstanding, &v1);
    napi_get_boolean(env, atBoundary(s) && s->b2c.r == s->b2c.clear, &v2);
    napi_create_int32(env, s->status, &v3);
    napi_set_named_property(env, o, "outstanding", v1);
    napi_set_named_property(env, o, "boundary", v2);
    napi_set_named_property(env, o, "status", v3);
    release((size_t)idx);
    out = o;
  }
  pthread_mutex_unlock(&mu);
  if (!out) napi_get_null(env, &out);
  return out;
}

// recall(handle): give the session back before the client's next message (R_RECALL); a no-op
// when it is already on its way back.
static napi_value Recall(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double h;
  if (argc < 1 || !getNumber(env, argv[0], &h)) return throwErr(env, "splice.recall(handle): a number expected");
  pthread_mutex_lock(&mu);
  long idx = slotOf(h);
  if (idx >= 0) slots[idx]->recall = 1;
  pthread_mutex_unlock(&mu);
  napi_get_undefined(env, &out);
  return out;
}

// selects(counter) → SELECT/WITH statements counted there so far.
static napi_value Selects(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id = -1;
  if (argc >= 1) getNumber(env, argv[0], &id);
  double n = 0;
  pthread_mutex_lock(&mu);
  if (id >= 0 && id < MAX_COUNTERS) n = selects[(int)id];
  pthread_mutex_unlock(&mu);
  napi_create_double(env, n, &out);
  return out;
}

// inputWaiting(fd) → true when the descriptor has bytes to read, or its peer closed or failed.
// The pool asks it of an idle connection before handing it out: anything there is a message
// nobody asked for (a FATAL before the server closes), which libuv has not read yet. One
// poll(2) per checkout, about 1 µs (a MSG_PEEK recv measured the same), once per session: not
// on the per-statement path; skipping it for recently pooled connections would let a
// connection PostgreSQL ended just then through.
static napi_value InputWaiting(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double fd;
  if (argc < 1 || !getNumber(env, argv[0], &fd)) return throwErr(env, "splice.inputWaiting(fd): a number expected");
  struct pollfd p = {.fd = (int)fd, .events = POLLIN | POLLRDHUP, .revents = 0};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  napi_get_boolean(env, n != 0, &out); // an error (a bad descriptor) counts as input: the connection is unusable
  return out;
}

// watchCalls(names, prefixes): adds function names (lower case) whose calls classify() leaves
// to JavaScript. Names of NAME_MAX_LEN bytes or more are not kept: harmlessParen never judges
// a name that long (PostgreSQL's own limit is 63 bytes).
static int addCall(napi_env env, napi_value v, int prefix) {
  CallName f = {.prefix = prefix};
  if (napi_get_value_string_utf8(env, v, f.name, sizeof f.name, &f.len) != napi_ok) return 0;
  if (f.len >= NAME_MAX_LEN || (f.len == 0 && !prefix)) return 1; // (an empty prefix: every call matters)
  for (size_t i = 0; i < ncalls; i++) if (calls[i].prefix == prefix && calls[i].len == f.len && memcmp(calls[i].name, f.name, f.len) == 0) return 1;
  CallName *nc = realloc(calls, (ncalls + 1) * sizeof(CallName));
  if (!nc) return 0;
  calls = nc;
  calls[ncalls++] = f;
  return 1;
}

static napi_value WatchCalls(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t len[2];
  if (argc < 2 || napi_get_array_length(env, argv[0], &len[0]) != napi_ok || napi_get_array_length(env, argv[1], &len[1]) != napi_ok) {
    return throwErr(env, "splice.watchCalls(names, prefixes): two arrays of strings expected");
  }
  int ok = 1;
  pthread_mutex_lock(&mu);
  for (int a = 0; a < 2 && ok; a++) {
    for (uint32_t i = 0; i < len[a] && ok; i++) {
      napi_value v;
      ok = napi_get_element(env, argv[a], i, &v) == napi_ok && addCall(env, v, a == 1);
    }
  }
  if (ok) callsKnown = 1;
  pthread_mutex_unlock(&mu);
  if (!ok) return throwErr(env, "splice.watchCalls: a string expected, or out of memory");
  return NULL;
}

// live() → sessions attached now.
static napi_value Live(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  pthread_mutex_lock(&mu);
  size_t n = live;
  pthread_mutex_unlock(&mu);
  napi_create_double(env, (double)n, &out);
  return out;
}

static napi_value Register(napi_env env, napi_value exports) {
  const char *small = "EDCHSXcf", *large = "QPBdF";
  for (const char *p = small; *p; p++) FRONTEND[(uint8_t)*p] = 1;
  for (const char *p = large; *p; p++) FRONTEND[(uint8_t)*p] = 2;
  napi_property_descriptor props[] = {
      {"init", NULL, Init, NULL, NULL, NULL, napi_default, NULL},
      {"attach", NULL, Attach, NULL, NULL, NULL, napi_default, NULL},
      {"kill", NULL, Kill, NULL, NULL, NULL, napi_default, NULL},
      {"recall", NULL, Recall, NULL, NULL, NULL, napi_default, NULL},
      {"selects", NULL, Selects, NULL, NULL, NULL, napi_default, NULL},
      {"live", NULL, Live, NULL, NULL, NULL, napi_default, NULL},
      {"inputWaiting", NULL, InputWaiting, NULL, NULL, NULL, napi_default, NULL},
      {"watchCalls", NULL, WatchCalls, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Register)
