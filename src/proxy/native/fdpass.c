// Descriptor passing (SCM_RIGHTS) over a unix stream socket, for the online restart
// (src/takeover). Node can adopt a descriptor as a server or a socket, but it has no API to
// send or receive one between unrelated processes (child_process IPC only reaches its own
// children), so these few system calls live here.
//
// Contract (fdpass.ts wraps it):
//   connect(path)                → fd   a blocking-free (O_NONBLOCK) unix stream socket connected to path
//   send(fd, data, fds[], ms)    → n    sendmsg of `data` with `fds` attached to its first byte;
//                                       waits up to `ms` for room (poll); returns bytes sent
//                                       (it may be short: the caller sends the rest with no fds)
//   recv(fd, max, ms)            → {data, fds} | null   one recvmsg after waiting up to `ms`
//                                       for input; null when nothing came; data of length 0
//                                       means the peer closed. Received descriptors are
//                                       close-on-exec (MSG_CMSG_CLOEXEC).
//   close(fd)                          closes a descriptor this module returned.
//   dup(fd)                      → fd   a close-on-exec duplicate (so the sender can close its own
//                                       handle without closing what it sent)
// Errors throw with the system call and errno text. Nothing here keeps state, runs a thread
// or touches a descriptor it was not handed; the caller owns every descriptor.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// Linux's SCM_MAX_FD is 253; the caller sends at most this many per call.
#define MAX_FDS 250

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int argInt(napi_env env, napi_value v, int *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  *out = (int)d;
  return 1;
}

static napi_value Connect(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], addr.sun_path, sizeof addr.sun_path, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "connect(path): path must be a string");
    return NULL;
  }
  if (len >= sizeof addr.sun_path - 1) {
    napi_throw_error(env, NULL, "connect(path): path is longer than a unix socket address allows");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "socket", errno);
  // Connecting a unix stream socket does not wait on the network: blocking is fine here.
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    int e = errno;
    close(fd);
    char what[160];
    snprintf(what, sizeof what, "connect %s", addr.sun_path);
    return fail(env, what, e);
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static int waitFor(int fd, short events, int ms) {
  struct pollfd p = {.fd = fd, .events = events};
  for (;;) {
    int r = poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, ms;
  void *data;
  size_t dataLen;
  uint32_t nfds = 0;
  if (argc < 4 || !argInt(env, argv[0], &fd) || napi_get_buffer_info(env, argv[1], &data, &dataLen) != napi_ok ||
      napi_get_array_length(env, argv[2], &nfds) != napi_ok || !argInt(env, argv[3], &ms)) {
    napi_throw_type_error(env, NULL, "send(fd, data: Buffer, fds: number[], waitMs)");
    return NULL;
  }
  if (nfds > MAX_FDS) {
    napi_throw_range_error(env, NULL, "send: more than 250 descriptors in one call");
    return NULL;
  }
  if (dataLen == 0) {
    napi_throw_range_error(env, NULL, "send: descriptors travel with at least one byte");
    return NULL;
  }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value v;
    napi_get_element(env, argv[2], i, &v);
    if (!argInt(env, v, &fds[i]) || fds[i] < 0) {
      napi_throw_type_error(env, NULL, "send: fds must be descriptors (non-negative integers)");
      return NULL;
    }
  }
  char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct iovec iov = {.iov_base = data, .iov_len = dataLen};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    memset(cbuf, 0, sizeof cbuf);
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  for (;;) {
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      napi_value out;
      napi_create_int64(env, n, &out);
      return out;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int r = waitFor(fd, POLLOUT, ms);
      if (r > 0) continue;
      if (r == 0) return fail(env, "sendmsg (waiting for room)", ETIMEDOUT);
    }
    return fail(env, "sendmsg", errno);
  }
}

static napi_value Recv(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, max, ms;
  if (argc < 3 || !argInt(env, argv[0], &fd) || !argInt(env, argv[1], &max) || !argInt(env, argv[2], &ms) || max <= 0) {
    napi_throw_type_error(env, NULL, "recv(fd, maxBytes > 0, waitMs)");
    return NULL;
  }
  int r = waitFor(fd, POLLIN, ms);
  if (r < 0) return fail(env, "poll", errno);
  napi_value out;
  if (r == 0) {
    napi_get_null(env, &out);
    return out;
  }
  void *buf = malloc((size_t)max);
  if (!buf) return fail(env, "recv", ENOMEM);
  char cbuf[CMSG_SPACE(sizeof(int) * 253)];
  struct iovec iov = {.iov_base = buf, .iov_len = (size_t)max};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t n;
  for (;;) {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0 || errno != EINTR) break;
  }
  if (n < 0) {
    int e = errno;
    free(buf);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      napi_get_null(env, &out);
      return out;
    }
    return fail(env, "recvmsg", e);
  }
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *got = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      napi_value v;
      napi_create_int32(env, got[i], &v);
      napi_set_element(env, arr, k++, v);
    }
  }
  int truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  napi_value data, trunc;
  void *p;
  napi_create_buffer_copy(env, (size_t)n, n > 0 ? buf : (void *)"", &p, &data);
  free(buf);
  napi_get_boolean(env, truncated, &trunc);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "data", data);
  napi_set_named_property(env, out, "fds", arr);
  napi_set_named_property(env, out, "truncated", trunc);
  return out;
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc < 1 || !argInt(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "close(fd)");
    return NULL;
  }
  if (close(fd) != 0 && errno != EINTR) return fail(env, "close", errno);
  return NULL;
}

static napi_value Dup(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc < 1 || !argInt(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "dup(fd)");
    return NULL;
  }
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return fail(env, "dup", errno);
  napi_value out;
  napi_create_int32(env, d, &out);
  return out;
}

static napi_value Register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"connect", NULL, Connect, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, Send, NULL, NULL, NULL, napi_default, NULL},
      {"recv", NULL, Recv, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, Close, NULL, NULL, NULL, napi_default, NULL},
      {"dup", NULL, Dup, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Register)
