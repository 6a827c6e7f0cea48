// fdpass: the little Node cannot do for NSM's descriptor passing (upstream: github.com/edwarnicke/grpcfd).
// Node's net.Socket reads with read(2), which drops SCM_RIGHTS ancillary data, and cannot attach descriptors
// to the bytes it writes. This addon gives JavaScript, for a connected unix stream socket it owns:
//   watch(fd, cb)        readiness from the event loop (uv_poll): cb(status, readable, writable)
//   setEvents(h, r, w)   which readiness to watch for; unwatch(h) stops and releases the watcher
//   recv(fd, buf)        recvmsg(2): [bytes (0 = EOF, -errno), received descriptors]
//   send(fd, buf, fds)   sendmsg(2) with the descriptors as SCM_RIGHTS: bytes written or -errno
//   openPath(path)       open(O_PATH): a descriptor naming a file that cannot be opened for reading (sockets)
//   dup(fd)              an independent close-on-exec copy
//   shutdownWrite(fd)    shutdown(SHUT_WR): the peer reads EOF once our last bytes are read
// Everything else (streams, TLS, gRPC) stays in TypeScript: src/core/fdpass/.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// grpcfd reads with room for 64 descriptors; so do we.
#define MAX_FDS 64

#define CHECK(call)                                                                                          \
  do {                                                                                                       \
    if ((call) != napi_ok) {                                                                                 \
      napi_throw_error(env, NULL, "fdpass: " #call " failed");                                               \
      return NULL;                                                                                           \
    }                                                                                                        \
  } while (0)

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context async;
  int events;
  int closing;
} watcher_t;

static void on_closed(uv_handle_t *h) {
  watcher_t *w = (watcher_t *)h->data;
  napi_delete_reference(w->env, w->cb);
  napi_async_destroy(w->env, w->async);
  free(w);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  watcher_t *w = (watcher_t *)p->data;
  if (w->closing) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[3];
  napi_get_reference_value(env, w->cb, &cb);
  napi_get_global(env, &recv); // make_callback wants an object as `this`
  napi_create_int32(env, status, &argv[0]);
  napi_get_boolean(env, (events & UV_READABLE) != 0, &argv[1]);
  napi_get_boolean(env, (events & UV_WRITABLE) != 0, &argv[2]);
  napi_value result;
  // make_callback: microtasks run and an exception reaches process 'uncaughtException', as for any I/O event.
  if (napi_make_callback(env, w->async, recv, cb, 3, argv, &result) != napi_ok) uv_poll_stop(p);
  napi_close_handle_scope(env, scope);
}

static watcher_t *unwrap_watcher(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) return NULL;
  return (watcher_t *)data;
}

// The call's first `n` arguments into argv, the first of them a descriptor.
static napi_status fd_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, int32_t *fd) {
  size_t argc = n;
  napi_status s = napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return s != napi_ok ? s : napi_get_value_int32(env, argv[0], fd);
}

static napi_value js_watch(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  CHECK(fd_args(env, info, 2, argv, &fd));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  watcher_t *w = calloc(1, sizeof(*w));
  if (!w) {
    napi_throw_error(env, "ENOMEM", "fdpass: out of memory");
    return NULL;
  }
  w->env = env;
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc != 0) {
    free(w);
    napi_throw_error(env, uv_err_name(rc), uv_strerror(rc));
    return NULL;
  }
  w->poll.data = w;
  napi_value name;
  CHECK(napi_create_string_utf8(env, "fdpass.watch", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &w->async));
  CHECK(napi_create_reference(env, argv[1], 1, &w->cb));
  napi_value ext;
  CHECK(napi_create_external(env, w, NULL, NULL, &ext));
  return ext;
}

static napi_value js_set_events(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  watcher_t *w = unwrap_watcher(env, argv[0]);
  bool r, wr;
  CHECK(napi_get_value_bool(env, argv[1], &r));
  CHECK(napi_get_value_bool(env, argv[2], &wr));
  if (!w || w->closing) return NULL;
  int events = (r ? UV_READABLE : 0) | (wr ? UV_WRITABLE : 0);
  if (events == w->events) return NULL;
  w->events = events;
  int rc = events ? uv_poll_start(&w->poll, events, on_poll) : uv_poll_stop(&w->poll);
  if (rc != 0) napi_throw_error(env, uv_err_name(rc), uv_strerror(rc));
  return NULL;
}

static napi_value js_unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  watcher_t *w = unwrap_watcher(env, argv[0]);
  if (!w || w->closing) return NULL;
  w->closing = 1;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, on_closed);
  return NULL;
}

// A non-negative result, or -errno.
static napi_value int_result(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

// A byte count, or -errno (taken right after the call: later calls may change errno).
static napi_value size_result(napi_env env, ssize_t n) {
  if (n < 0) return int_result(env, (int)n);
  napi_value out;
  if (napi_create_int64(env, (int64_t)n, &out) != napi_ok) return NULL;
  return out;
}

// A message of the one buffer `data`.
static void one_buffer(struct msghdr *msg, struct iovec *iov, void *data, size_t len) {
  iov->iov_base = data;
  iov->iov_len = len;
  memset(msg, 0, sizeof(*msg));
  msg->msg_iov = iov;
  msg->msg_iovlen = 1;
}

static napi_value js_recv(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  CHECK(fd_args(env, info, 2, argv, &fd));
  void *data;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));

  char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct iovec iov;
  struct msghdr msg;
  one_buffer(&msg, &iov, data, len);
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) n = -errno;

  napi_value out, fds;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_array(env, &fds));
  uint32_t nfds = 0;
  if (n >= 0) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int *p = (int *)CMSG_DATA(c);
      for (size_t i = 0; i < count; i++) {
        napi_value v;
        CHECK(napi_create_int32(env, p[i], &v));
        CHECK(napi_set_element(env, fds, nfds++, v));
      }
    }
    // Descriptors beyond our room were closed by the kernel; the sender learns nothing, as with grpcfd.
  }
  CHECK(napi_set_element(env, out, 0, size_result(env, n)));
  CHECK(napi_set_element(env, out, 1, fds));
  return out;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  CHECK(fd_args(env, info, 3, argv, &fd));
  void *data;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  uint32_t nfds = 0;
  CHECK(napi_get_array_length(env, argv[2], &nfds));
  if (nfds > MAX_FDS) {
    napi_throw_range_error(env, NULL, "fdpass: at most 64 descriptors per write");
    return NULL;
  }
  if (nfds > 0 && len == 0) {
    // A unix stream socket carries descriptors only along with at least one byte.
    napi_throw_range_error(env, NULL, "fdpass: descriptors need at least one byte to travel with");
    return NULL;
  }
  char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct iovec iov;
  struct msghdr msg;
  one_buffer(&msg, &iov, data, len);
  if (nfds > 0) {
    memset(control, 0, sizeof(control));
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    int *p = (int *)CMSG_DATA(c);
    for (uint32_t i = 0; i < nfds; i++) {
      napi_value v;
      CHECK(napi_get_element(env, argv[2], i, &v));
      CHECK(napi_get_value_int32(env, v, &p[i]));
    }
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  return size_result(env, n < 0 ? -errno : n);
}

static napi_value js_open_path(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len));
  int fd = open(path, O_PATH | O_CLOEXEC);
  return int_result(env, fd < 0 ? -errno : fd);
}

static napi_value js_dup(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  CHECK(fd_args(env, info, 1, argv, &fd));
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return int_result(env, d < 0 ? -errno : d);
}

static napi_value js_shutdown_write(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  CHECK(fd_args(env, info, 1, argv, &fd));
  return int_result(env, shutdown(fd, SHUT_WR) < 0 ? -errno : 0);
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"watch", NULL, js_watch, NULL, NULL, NULL, napi_default, NULL},
      {"setEvents", NULL, js_set_events, NULL, NULL, NULL, napi_default, NULL},
      {"unwatch", NULL, js_unwatch, NULL, NULL, NULL, napi_default, NULL},
      {"recv", NULL, js_recv, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"openPath", NULL, js_open_path, NULL, NULL, NULL, napi_default, NULL},
      {"dup", NULL, js_dup, NULL, NULL, NULL, napi_default, NULL},
      {"shutdownWrite", NULL, js_shutdown_write, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
