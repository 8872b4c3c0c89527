/*
 * loadgen: a small WebSocket load generator for Rally's benchmarks (bench/run.ts builds it with
 * `cc -O2 -o bench/loadgen/build/loadgen bench/loadgen/loadgen.c`).
 *
 * One thread, epoll, non-blocking sockets, thousands of connections. It does the HTTP upgrade
 * itself and sends frames built once at start (masked, as a client must; with permessage-deflate
 * the frames carry bytes compressed beforehand with no context takeover, so every message
 * compresses to the same bytes). Incoming frames are parsed properly: headers split across reads,
 * extended lengths, and masked frames (the raw `node:net` peer echoes the client's masked bytes
 * back, which this client accepts).
 *
 * Modes:
 *   echo       each connection keeps --window messages in flight; every echoed message is timed
 *              (round trip, from a per-connection ring of send times: echoes come back in order)
 *              and replaced by a new one.
 *   sink       --conns subscribers on --sub-path count what they receive; one more connection on
 *              --pub-path sends 64-byte trigger messages that the server publishes to every
 *              subscriber. A trigger carries its send time (CLOCK_MONOTONIC, ns) and a sequence
 *              number; delivery latency is receive time minus send time. Closed loop: --window
 *              broadcasts in flight, so the server runs flat out without unbounded buffering.
 *   handshake  --conns concurrent slots open a connection, upgrade, and on the 101 reset it
 *              (SO_LINGER 0: no TIME_WAIT) and start over. Counts 101s per second.
 *   idle       opens --conns connections, prints "ready N" on stderr, holds them for --duration
 *              seconds (or until SIGTERM), then resets them. With --once, each connection first
 *              sends one message (the echo mode's: --size, --payload-file or --deflate-file) and
 *              "ready" waits until every echo is back: memory held after one exchange (the
 *              compression contexts of permessage-deflate with context takeover).
 *
 * Protocols (--proto, sink and idle): subscribers and idle connections may speak an application
 * protocol over their WebSocket text frames, so that real-time layers are measured doing what
 * their clients do:
 *   ws         nothing (the default): every message received is a delivery.
 *   rally      rally.v1 (docs/protocol.md): the upgrade offers the subprotocol; `connect`, then
 *              `subscribe` to --channel; a `ping` push is answered with `pong`.
 *   socketio   Socket.IO 4 on its websocket transport (--sub-path /socket.io/?EIO=4&transport=websocket):
 *              on the Engine.IO open packet `0{...}` it sends `40` (namespace connect), on `40{...}`
 *              an event `421["join","<channel>"]` with ack id 1, and the ack `431...` confirms
 *              the subscription; Engine.IO pings `2` are answered with `3`.
 * Publishing (sink) and the idle "ready" line wait until every open connection's subscription
 * is confirmed; only publications (`{"push":"pub"`, `42`) count as deliveries. With --text the
 * triggers are text: the send time and sequence in hex, which the real-time servers publish as
 * a JSON string; the send time is read back where the publication's payload starts (after
 * `"data":"` in a rally.v1 push, after `42["m","` in a Socket.IO event).
 *
 * A cluster: --ports P1,P2,... spreads the subscribers over several servers in turn (the
 * publisher connects to the first) and --server-pids PID1,PID2,... sums their CPU time and RSS.
 *
 * Timing: --warmup seconds of load, then --duration seconds measured. At the window's edges it
 * reads its own CPU time (getrusage) and, with --server-pid, the server's utime+stime from
 * /proc/PID/stat, so both CPU figures cover exactly the measured window. With --server-pid it also
 * reads the server's resident set size from /proc/PID/statm at both edges and every 50 ms in
 * between, and reports the peak as well as the edges: a server that holds memory only while
 * under load (compression buffers, write backlogs) shows it in the peak, not at the end. The
 * report is one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ options */

enum { MODE_ECHO, MODE_SINK, MODE_HANDSHAKE, MODE_IDLE };

static int opt_mode = MODE_ECHO;
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static const char *opt_path = "/";
static const char *opt_sub_path = "/sub";
static const char *opt_pub_path = "/pub";
static int opt_conns = 1;
static int opt_window = 1;
static size_t opt_size = 32;
static const char *opt_payload_file = NULL;
static const char *opt_deflate_file = NULL;
static const char *opt_offer = NULL;
static int opt_text = 0;
static int opt_once = 0;
static double opt_warmup = 1.0;
static double opt_duration = 3.0;
static int opt_server_pid = 0;
/* A cluster (--ports, --server-pids): subscribers are spread over the ports in turn, the
 * publisher uses the first; the servers' CPU time and RSS are the sums over their processes. */
#define MAX_NODES 8
static int node_ports[MAX_NODES];
static int n_node_ports = 0;
static int server_pids[MAX_NODES];
static int n_server_pids = 0;
static int opt_connect_concurrency = 256;
/* What subscribers (sink) and idle connections speak after the upgrade: nothing (plain
 * WebSocket), rally.v1 (connect, then subscribe to --channel) or Socket.IO 4 over its websocket
 * transport (Engine.IO open, namespace connect, then a "join" event with an ack). */
enum { PROTO_WS, PROTO_RALLY, PROTO_SOCKETIO };
static int opt_proto = PROTO_WS;
static const char *opt_channel = "bench";

/* ------------------------------------------------------------------ clock, histogram */

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Log-linear buckets: exact below 32 ns, then 32 sub-buckets per power of two (error < 1.6%). */
#define HIST_BUCKETS (60 * 32)
static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_count, hist_sum, hist_max, hist_min = UINT64_MAX;

static inline int hist_index(uint64_t v) {
  if (v < 32) return (int)v;
  int e = 63 - __builtin_clzll(v);
  return (e - 4) * 32 + (int)((v >> (e - 5)) & 31);
}

static inline void hist_record(uint64_t v) {
  hist[hist_index(v)]++;
  hist_count++;
  hist_sum += v;
  if (v > hist_max) hist_max = v;
  if (v < hist_min) hist_min = v;
}

static double hist_bucket_mid(int idx) {
  if (idx < 32) return idx;
  int e = idx / 32 + 4;
  int m = idx % 32;
  double low = (double)(32 + m) * (double)(1ull << (e - 5));
  double width = (double)(1ull << (e - 5));
  return low + width / 2;
}

static double hist_percentile(double p) {
  if (hist_count == 0) return 0;
  uint64_t rank = (uint64_t)(p * (double)hist_count);
  if (rank >= hist_count) rank = hist_count - 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += hist[i];
    if (seen > rank) {
      double mid = hist_bucket_mid(i);
      return mid > (double)hist_max ? (double)hist_max : mid;
    }
  }
  return (double)hist_max;
}

static void hist_reset(void) {
  memset(hist, 0, sizeof hist);
  hist_count = hist_sum = hist_max = 0;
  hist_min = UINT64_MAX;
}

/* ------------------------------------------------------------------ CPU accounting */

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* Reads /proc/PID/NAME into buf (NUL-terminated); 0 on success, -1 if unreadable. */
static int read_proc_file(int pid, const char *name, char *buf, size_t size) {
  if (pid <= 0) return -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  return 0;
}

/* utime + stime of a process (all its threads), from /proc/PID/stat; -1 if unreadable. */
static double proc_cpu_s(int pid) {
  char buf[1024];
  if (read_proc_file(pid, "stat", buf, sizeof buf) != 0) return -1;
  char *p = strrchr(buf, ')'); /* the command name may contain spaces */
  if (p == NULL) return -1;
  p += 2; /* field 3, state */
  unsigned long long utime = 0, stime = 0;
  /* fields 3..13 skipped, then 14 utime, 15 stime */
  for (int field = 3; field < 14 && *p; field++) {
    p = strchr(p, ' ');
    if (p == NULL) return -1;
    p++;
  }
  if (sscanf(p, "%llu %llu", &utime, &stime) != 2) return -1;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Resident set size of a process in KiB, from /proc/PID/statm (the same count as VmRSS in
 * /proc/PID/status, without formatting the rest of that file); -1 if unreadable. */
static double proc_rss_kib(int pid) {
  char buf[256];
  if (read_proc_file(pid, "statm", buf, sizeof buf) != 0) return -1;
  unsigned long long size = 0, resident = 0;
  if (sscanf(buf, "%llu %llu", &size, &resident) != 2) return -1;
  return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1024.0;
}

/* The measured window's RSS samples: first, last, largest. */
static double rss_first_kib = -1, rss_last_kib = -1, rss_peak_kib = -1;
static unsigned rss_samples = 0;

/* The sums over --server-pids (or the one --server-pid); -1 if one is unreadable. */
static double servers_cpu_s(void) {
  double sum = 0;
  for (int i = 0; i < n_server_pids; i++) {
    double cpu = proc_cpu_s(server_pids[i]);
    if (cpu < 0) return -1;
    sum += cpu;
  }
  return n_server_pids > 0 ? sum : -1;
}

static void sample_servers_rss(void) {
  double sum = 0;
  for (int i = 0; i < n_server_pids; i++) {
    double kib = proc_rss_kib(server_pids[i]);
    if (kib < 0) return;
    sum += kib;
  }
  if (rss_samples == 0) rss_first_kib = sum;
  rss_last_kib = sum;
  if (sum > rss_peak_kib) rss_peak_kib = sum;
  rss_samples++;
}

/* "a,b,c" into up to MAX_NODES positive integers; the count, or -1 if malformed. */
static int parse_int_list(const char *text, int *out) {
  int n = 0;
  const char *p = text;
  while (*p) {
    char *end;
    long value = strtol(p, &end, 10);
    if (end == p || value <= 0 || n == MAX_NODES) return -1;
    out[n++] = (int)value;
    p = *end == ',' ? end + 1 : end;
    if (*end != ',' && *end != 0) return -1;
  }
  return n;
}

/* ------------------------------------------------------------------ connections */

enum { C_FREE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSED };
enum { ROLE_PLAIN, ROLE_PUB };

/* The first bytes of each message are kept: 16 tell a protocol's messages apart; text
 * publications of a real-time layer are kept further, to where their payload's send time is
 * (after a rally.v1 envelope's fields). */
#define PREFIX_MAX 192
static size_t prefix_cap = 16;

typedef struct conn {
  int fd;
  uint8_t state;
  uint8_t role;
  uint8_t out_armed; /* EPOLLOUT registered */
  uint8_t hdr_have;
  uint8_t hdr_need;
  uint8_t in_payload;
  uint8_t masked;
  uint8_t opcode;
  uint8_t fin;
  uint8_t prefix_have;
  uint8_t proto_state; /* protocol handshake progress, see proto_message() */
  uint8_t mask[4];
  uint8_t hdr[14];
  uint8_t prefix[PREFIX_MAX];
  uint64_t remaining;
  uint64_t payload_pos;
  /* handshake */
  char *hs;
  uint32_t hs_len;
  uint64_t t_start;
  /* echo */
  uint32_t inflight;
  uint32_t ring_head;
  uint32_t ring_tail;
  uint64_t *ring;
  uint64_t out_pending; /* bytes of the repeated echo frame still to write */
  uint32_t out_off;     /* offset of the next byte within the frame */
  /* publisher: small queue of trigger frames */
  uint8_t *pbuf;
  uint32_t pbuf_len;
  uint32_t pbuf_off;
} conn;

static int epfd;
static conn *conns;
static int conn_total;
static struct sockaddr_in server_addr;
static volatile sig_atomic_t stop_requested = 0;

/* Frame bytes sent in echo mode: (window + 1) copies back to back, so that the unsent bytes of
 * any number of in-flight frames, from any offset within a frame, are one contiguous write. */
static uint8_t *echo_frames;
static size_t echo_frame_len;
static size_t payload_len;

static char request_buf[1024];
static char request_pub_buf[1024];
static int request_len, request_pub_len;
static const char *ACCEPT_VALUE = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; /* for the key below (RFC 6455 1.3) */
static uint8_t mask_key[4];

/* Counters; reset when the measured window opens. */
static uint64_t messages, rx_bytes, tx_messages, handshakes;
static uint64_t errors, server_closes, handshake_failures, stalls, masked_frames;
static int connected, connect_failed;
static int subscribed; /* connections whose subscription the server confirmed (--proto) */
/* Data frames from the server with RSV1 (compressed), over the whole run: a server that accepts
 * permessage-deflate may still send uncompressed, which the runner reports. */
static uint64_t compressed_frames;
static int phase_measure = 0;

/* sink */
static conn *publisher;
static uint64_t trig_sent, deliveries_all, deliveries_lost;
static uint64_t last_delivery_ns, last_trigger_ns;

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void set_events(conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static void reset_close(conn *c) {
  if (c->fd >= 0) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  if (c->state == C_OPEN) connected--;
  c->state = C_CLOSED;
  free(c->hs);
  c->hs = NULL;
}

/*
 * Local ports are chosen here, in turn, rather than by the kernel: with tens of thousands of
 * connections to one address, the kernel's search for a free ephemeral port gets slower with
 * every connection (19,900 connections took 20 s). A port that is taken (EADDRINUSE: another
 * process, a listening service) is skipped. Connections are reset when closed, so no port is
 * left in TIME_WAIT.
 */
static int next_port = 0;

static int bind_local_port(int fd) {
  if (next_port == 0) next_port = 20000 + (int)(now_ns() % 20000);
  struct sockaddr_in local;
  memset(&local, 0, sizeof local);
  local.sin_family = AF_INET;
  local.sin_addr = server_addr.sin_addr;
  for (int attempt = 0; attempt < 64; attempt++) {
    int port = next_port++;
    if (next_port > 65535) next_port = 10000;
    int taken = port == opt_port;
    for (int k = 0; k < n_node_ports; k++) taken |= port == node_ports[k];
    if (taken) continue;
    local.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&local, sizeof local) == 0) return 0;
    if (errno != EADDRINUSE) return -1;
  }
  return -1; /* let connect() pick one */
}

static int start_connect(conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bind_local_port(fd);
  struct sockaddr_in addr = server_addr;
  if (n_node_ports > 1) {
    int index = (int)(c - conns);
    addr.sin_port = htons((uint16_t)node_ports[index >= opt_conns ? 0 : index % n_node_ports]);
  }
  int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  if (r < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->state = C_CONNECTING;
  c->hdr_need = 2;
  c->t_start = now_ns();
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
  c->out_armed = 1;
  return 0;
}

static int build_request(char *buf, size_t cap, const char *path, int with_protocol) {
  char ext[700] = "";
  size_t used = 0;
  if (opt_offer != NULL) used = (size_t)snprintf(ext, sizeof ext, "Sec-WebSocket-Extensions: %s\r\n", opt_offer);
  if (with_protocol && opt_proto == PROTO_RALLY && used < sizeof ext)
    snprintf(ext + used, sizeof ext - used, "Sec-WebSocket-Protocol: rally.v1\r\n");
  return snprintf(buf, cap,
                  "GET %s HTTP/1.1\r\n"
                  "Host: %s:%d\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "%s\r\n",
                  path, opt_host, opt_port, ext);
}

/* Writes a client frame header with the shared mask key; returns its length. */
static size_t frame_header(uint8_t *out, int opcode, int rsv1, size_t len) {
  size_t p = 0;
  out[p++] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
  if (len < 126) {
    out[p++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    out[p++] = 0x80 | 126;
    out[p++] = (uint8_t)(len >> 8);
    out[p++] = (uint8_t)len;
  } else {
    out[p++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) out[p++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(out + p, mask_key, 4);
  return p + 4;
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die(path);
  struct stat st;
  if (fstat(fileno(f), &st) < 0) die(path);
  uint8_t *data = malloc((size_t)st.st_size + 1);
  *len = fread(data, 1, (size_t)st.st_size, f);
  fclose(f);
  return data;
}

static void build_echo_frames(void) {
  uint8_t *payload;
  int rsv1 = 0;
  if (opt_deflate_file != NULL) {
    payload = read_file(opt_deflate_file, &payload_len);
    rsv1 = 1;
  } else if (opt_payload_file != NULL) {
    payload = read_file(opt_payload_file, &payload_len);
  } else {
    payload_len = opt_size;
    payload = malloc(payload_len + 1);
    for (size_t i = 0; i < payload_len; i++) payload[i] = (uint8_t)('a' + (i * 7) % 26);
  }
  uint8_t header[14];
  size_t hlen = frame_header(header, opt_text ? 1 : 2, rsv1, payload_len);
  echo_frame_len = hlen + payload_len;
  echo_frames = malloc(echo_frame_len * (size_t)(opt_window + 1));
  uint8_t *frame = echo_frames;
  memcpy(frame, header, hlen);
  for (size_t i = 0; i < payload_len; i++) frame[hlen + i] = payload[i] ^ mask_key[i & 3];
  for (int k = 1; k <= opt_window; k++) memcpy(echo_frames + k * echo_frame_len, frame, echo_frame_len);
  free(payload);
}

/* ------------------------------------------------------------------ output */

static void arm_out(conn *c, int on) {
  if (c->out_armed == on) return;
  c->out_armed = (uint8_t)on;
  set_events(c, EPOLLIN | (on ? EPOLLOUT : 0));
}

/* One send(); -1 when the caller must stop: the socket is full (EPOLLOUT armed) or failed
 * (counted and reset). */
static ssize_t send_or_stop(conn *c, const uint8_t *bytes, size_t n) {
  ssize_t w = send(c->fd, bytes, n, MSG_NOSIGNAL);
  if (w >= 0) return w;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    arm_out(c, 1);
  } else {
    errors++;
    reset_close(c);
  }
  return -1;
}

static void flush_echo(conn *c) {
  while (c->out_pending > 0) {
    size_t n = (size_t)c->out_pending;
    ssize_t w = send_or_stop(c, echo_frames + c->out_off, n);
    if (w < 0) return;
    c->out_pending -= (uint64_t)w;
    c->out_off = (uint32_t)((c->out_off + (size_t)w) % echo_frame_len);
    if ((size_t)w < n) {
      arm_out(c, 1);
      return;
    }
  }
  arm_out(c, 0);
}

static void echo_send(conn *c, uint32_t count, uint64_t t) {
  for (uint32_t i = 0; i < count; i++) {
    c->ring[c->ring_head] = t;
    c->ring_head = (c->ring_head + 1) % (uint32_t)opt_window;
  }
  c->inflight += count;
  c->out_pending += (uint64_t)count * echo_frame_len;
  tx_messages += count;
}

static void flush_pub(conn *c) {
  while (c->pbuf_off < c->pbuf_len) {
    ssize_t w = send_or_stop(c, c->pbuf + c->pbuf_off, c->pbuf_len - c->pbuf_off);
    if (w < 0) return;
    c->pbuf_off += (uint32_t)w;
  }
  c->pbuf_off = c->pbuf_len = 0;
  arm_out(c, 0);
}

#define TRIGGER_PAYLOAD 64
#define TRIGGER_FRAME (2 + 4 + TRIGGER_PAYLOAD)

static void send_trigger(uint64_t t) {
  conn *c = publisher;
  if (c == NULL || c->state != C_OPEN) return;
  if (c->pbuf == NULL) c->pbuf = malloc(TRIGGER_FRAME * 64);
  if (c->pbuf_len + TRIGGER_FRAME > TRIGGER_FRAME * 64) return;
  uint8_t payload[TRIGGER_PAYLOAD];
  memset(payload, 'x', sizeof payload);
  uint64_t seq = trig_sent;
  if (opt_text) {
    /* Text (the real-time servers publish it as a JSON string): the same fields in hex. Latency
     * is not read back from these (see on_message). */
    char hex[33];
    snprintf(hex, sizeof hex, "%016llx%016llx", (unsigned long long)t, (unsigned long long)seq);
    memcpy(payload, hex, 32);
  } else {
    memcpy(payload, &t, 8); /* little-endian on x86 and arm64 */
    memcpy(payload + 8, &seq, 8);
  }
  uint8_t *out = c->pbuf + c->pbuf_len;
  size_t h = frame_header(out, opt_text ? 1 : 2, 0, TRIGGER_PAYLOAD);
  for (int i = 0; i < TRIGGER_PAYLOAD; i++) out[h + i] = payload[i] ^ mask_key[i & 3];
  c->pbuf_len += (uint32_t)(h + TRIGGER_PAYLOAD);
  trig_sent++;
  last_trigger_ns = t;
}

/* Closed loop: keep --window broadcasts outstanding (counted in deliveries). */
static void pump_triggers(uint64_t t) {
  int64_t n = opt_conns;
  for (;;) {
    int64_t expected = (int64_t)trig_sent * n - (int64_t)deliveries_lost;
    int64_t outstanding = expected - (int64_t)deliveries_all;
    if (outstanding > (int64_t)(opt_window - 1) * n) break;
    send_trigger(t);
    if (publisher == NULL || publisher->pbuf_len + TRIGGER_FRAME > TRIGGER_FRAME * 64) break;
  }
  if (publisher != NULL && publisher->state == C_OPEN) flush_pub(publisher);
}

/* ------------------------------------------------------------------ input */

/* Sends one small text frame (a protocol command) on a subscriber; they are a few dozen bytes on
 * an otherwise quiet socket, so a short write is counted as an error rather than queued. */
static void send_small_frame(conn *c, int opcode, const uint8_t *payload, size_t len) {
  uint8_t frame[256];
  if (len > sizeof frame - 14) return;
  size_t h = frame_header(frame, opcode, 0, len);
  for (size_t i = 0; i < len; i++) frame[h + i] = payload[i] ^ mask_key[i & 3];
  ssize_t w = send(c->fd, frame, h + len, MSG_NOSIGNAL);
  if (w != (ssize_t)(h + len)) errors++;
}

static void send_text(conn *c, const char *text) {
  send_small_frame(c, 1, (const uint8_t *)text, strlen(text));
}

static int prefix_is(const conn *c, const char *text) {
  size_t n = strlen(text);
  return c->prefix_have >= n && memcmp(c->prefix, text, n) == 0;
}

/* The commands a --proto connection sends first: rally.v1 needs connect before anything else
 * (docs/protocol.md) and keeps later commands until connect is answered, so both go at once. */
static void proto_start(conn *c) {
  if (opt_proto == PROTO_RALLY) {
    char subscribe[200];
    snprintf(subscribe, sizeof subscribe, "{\"id\":2,\"cmd\":\"subscribe\",\"channel\":\"%s\"}", opt_channel);
    send_text(c, "{\"id\":1,\"cmd\":\"connect\",\"version\":1}");
    send_text(c, subscribe);
    c->proto_state = 1;
  }
  /* Socket.IO: the server speaks first (the Engine.IO open packet). */
}

/*
 * A complete text message on a --proto subscriber (its first 16 bytes in c->prefix, its length in
 * c->payload_pos): answers what the protocol requires and returns 1 for a delivery (a publication),
 * 0 for protocol traffic, which is not counted.
 */
static int proto_message(conn *c) {
  if (opt_proto == PROTO_RALLY) {
    if (prefix_is(c, "{\"push\":\"pub\"")) return 1;
    if (prefix_is(c, "{\"push\":\"ping\"")) send_text(c, "{\"cmd\":\"pong\"}");
    else if (prefix_is(c, "{\"id\":2,\"result\"") && c->proto_state == 1) {
      c->proto_state = 2;
      subscribed++;
    } else if (prefix_is(c, "{\"id\":") && c->prefix_have >= 14 && memcmp(c->prefix + 8, "\"error", 6) == 0) {
      static int shown = 0;
      if (!shown++) fprintf(stderr, "loadgen: rally.v1 command refused: %.*s\n", c->prefix_have, c->prefix);
      errors++;
    }
    return 0;
  }
  /* Engine.IO v4 packet types: 0 open, 2 ping, 3 pong, 4 message; Socket.IO inside 4: 0 connect,
   * 2 event, 3 ack, 4 connect error. */
  if (c->payload_pos == 1 && c->prefix[0] == '2') {
    send_text(c, "3");
    return 0;
  }
  if (prefix_is(c, "42")) return 1;
  if (prefix_is(c, "0") && c->proto_state == 0) {
    send_text(c, "40");
    c->proto_state = 1;
  } else if (prefix_is(c, "40") && c->proto_state == 1) {
    char join[200];
    snprintf(join, sizeof join, "421[\"join\",\"%s\"]", opt_channel);
    send_text(c, join);
    c->proto_state = 2;
  } else if (prefix_is(c, "431") && c->proto_state == 2) {
    c->proto_state = 3;
    subscribed++;
  } else if (prefix_is(c, "44")) {
    errors++;
  }
  return 0;
}

/*
 * The send time of a text publication, read back from where its payload starts: after
 * `"data":"` in a rally.v1 `pub` push, after `42["m","` in a Socket.IO event. The trigger's text
 * starts with the send time as 16 hex digits (CLOCK_MONOTONIC ns, this process's clock).
 */
static int text_send_time(const conn *c, uint64_t *sent) {
  const uint8_t *start = NULL;
  if (opt_proto == PROTO_SOCKETIO) {
    if (c->prefix_have >= 8 + 16 && memcmp(c->prefix, "42[\"m\",\"", 8) == 0) start = c->prefix + 8;
  } else {
    const uint8_t *at = memmem(c->prefix, c->prefix_have, "\"data\":\"", 8);
    if (at != NULL && at + 8 + 16 <= c->prefix + c->prefix_have) start = at + 8;
  }
  if (start == NULL) return 0;
  uint64_t value = 0;
  for (int i = 0; i < 16; i++) {
    uint8_t d = start[i];
    int nibble = d >= '0' && d <= '9' ? d - '0' : d >= 'a' && d <= 'f' ? d - 'a' + 10 : -1;
    if (nibble < 0) return 0;
    value = (value << 4) | (uint64_t)nibble;
  }
  *sent = value;
  return 1;
}

static void on_message(conn *c, uint64_t t) {
  if (opt_proto != PROTO_WS && c->role == ROLE_PLAIN && !proto_message(c)) return;
  if (opt_mode == MODE_ECHO) {
    if (c->inflight > 0) {
      uint64_t sent = c->ring[c->ring_tail];
      c->ring_tail = (c->ring_tail + 1) % (uint32_t)opt_window;
      c->inflight--;
      hist_record(t - sent);
    }
    messages++;
  } else if (opt_mode == MODE_IDLE) {
    messages++; /* --once: the echoes "ready" waits for */
  } else if (opt_mode == MODE_SINK) {
    deliveries_all++;
    last_delivery_ns = t;
    messages++;
    if (c->prefix_have >= 8 && !opt_text && opt_proto == PROTO_WS) {
      uint64_t sent;
      memcpy(&sent, c->prefix, 8);
      if (sent <= t) hist_record(t - sent);
    } else if (opt_text && opt_proto != PROTO_WS) {
      uint64_t sent;
      if (text_send_time(c, &sent) && sent <= t) hist_record(t - sent);
    }
  }
}

/* Parses frames from server bytes. Returns the number of complete data messages. */
static uint32_t parse_frames(conn *c, const uint8_t *buf, size_t n, uint64_t t) {
  size_t pos = 0;
  uint32_t completed = 0;
  while (pos < n) {
    if (!c->in_payload) {
      while (c->hdr_have < c->hdr_need && pos < n) {
        c->hdr[c->hdr_have++] = buf[pos++];
        if (c->hdr_have == 2) {
          uint8_t b1 = c->hdr[1];
          uint8_t len7 = b1 & 0x7f;
          c->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((b1 & 0x80) ? 4 : 0));
        }
      }
      if (c->hdr_have < c->hdr_need) break;
      uint8_t b0 = c->hdr[0], b1 = c->hdr[1];
      uint64_t len = b1 & 0x7f;
      size_t p = 2;
      if (len == 126) {
        len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
        p = 4;
      } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
        p = 10;
      }
      c->masked = (b1 & 0x80) != 0;
      if (c->masked) {
        memcpy(c->mask, c->hdr + p, 4);
        masked_frames++;
      }
      c->opcode = b0 & 0x0f;
      c->fin = (b0 & 0x80) != 0;
      if (b0 & 0x40) compressed_frames++;
      c->remaining = len;
      c->payload_pos = 0;
      c->prefix_have = 0;
      c->hdr_have = 0;
      c->hdr_need = 2;
      c->in_payload = 1;
    }
    size_t avail = n - pos;
    size_t take = c->remaining < avail ? (size_t)c->remaining : avail;
    /* A ping's payload is kept whole (at most 125 bytes, RFC 6455 5.5): the pong echoes it. */
    size_t cap = c->opcode == 0x9 ? PREFIX_MAX : prefix_cap;
    if ((opt_mode == MODE_SINK || opt_proto != PROTO_WS || c->opcode == 0x9) && c->prefix_have < cap && take > 0) {
      size_t want = cap - c->prefix_have;
      if (want > take) want = take;
      for (size_t i = 0; i < want; i++) {
        uint8_t b = buf[pos + i];
        if (c->masked) b ^= c->mask[(c->payload_pos + i) & 3];
        c->prefix[c->prefix_have + i] = b;
      }
      c->prefix_have = (uint8_t)(c->prefix_have + want);
    }
    pos += take;
    c->remaining -= take;
    c->payload_pos += take;
    if (c->remaining == 0) {
      c->in_payload = 0;
      if (c->opcode == 0x8) {
        server_closes++;
        return completed | 0x80000000u; /* closed */
      }
      /* Servers with a heartbeat (Rally's default) close a connection whose pings go unanswered
       * (RFC 6455 5.5.2: a pong in response): idle and subscriber connections must answer. */
      if (c->opcode == 0x9) send_small_frame(c, 0xA, c->prefix, c->prefix_have);
      if (c->opcode < 0x8 && c->fin) {
        completed++;
        on_message(c, t);
      }
    }
  }
  return completed;
}

static uint8_t readbuf[1 << 18];

static void on_handshake_done(conn *c, uint64_t t, const char *leftover, size_t leftover_len);

static void handle_handshake_bytes(conn *c, uint64_t t) {
  /* Reads the 101 response; any bytes after the head go to the frame parser. */
  if (c->hs == NULL) {
    c->hs = malloc(2048);
    c->hs_len = 0;
  }
  ssize_t r = read(c->fd, c->hs + c->hs_len, 2047 - c->hs_len);
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    handshake_failures++;
    reset_close(c);
    return;
  }
  c->hs_len += (uint32_t)r;
  c->hs[c->hs_len] = 0;
  char *end = strstr(c->hs, "\r\n\r\n");
  if (end == NULL) {
    if (c->hs_len >= 2047) {
      handshake_failures++;
      reset_close(c);
    }
    return;
  }
  size_t head_len = (size_t)(end - c->hs) + 4;
  int ok = strncmp(c->hs, "HTTP/1.1 101", 12) == 0 && strstr(c->hs, ACCEPT_VALUE) != NULL;
  if (ok && opt_offer != NULL && strstr(c->hs, "permessage-deflate") == NULL) {
    static int warned = 0;
    if (!warned++) fprintf(stderr, "loadgen: the server did not accept permessage-deflate\n");
    ok = 0;
  }
  if (!ok) {
    static int shown = 0;
    if (!shown++) fprintf(stderr, "loadgen: handshake refused: %.*s\n", (int)(strcspn(c->hs, "\r")), c->hs);
    handshake_failures++;
    reset_close(c);
    return;
  }
  on_handshake_done(c, t, c->hs + head_len, c->hs_len - head_len);
}

static void on_handshake_done(conn *c, uint64_t t, const char *leftover, size_t leftover_len) {
  if (opt_mode == MODE_HANDSHAKE) {
    if (phase_measure) {
      handshakes++;
      hist_record(t - c->t_start);
    }
    reset_close(c); /* handle_event starts the slot's next connection */
    return;
  }
  c->state = C_OPEN;
  connected++;
  if (opt_proto != PROTO_WS && c->role == ROLE_PLAIN) proto_start(c);
  if (leftover_len > 0) {
    char tmp[2048];
    memcpy(tmp, leftover, leftover_len);
    free(c->hs);
    c->hs = NULL;
    parse_frames(c, (const uint8_t *)tmp, leftover_len, t);
  } else {
    free(c->hs);
    c->hs = NULL;
  }
}

static void handle_event(conn *c, uint32_t events) {
  uint64_t t = now_ns();
  if (c->state == C_CONNECTING) {
    if (events & (EPOLLERR | EPOLLHUP)) {
      connect_failed++;
      handshake_failures++;
      reset_close(c);
      if (opt_mode == MODE_HANDSHAKE) start_connect(c);
      return;
    }
    if (events & EPOLLOUT) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        connect_failed++;
        handshake_failures++;
        reset_close(c);
        if (opt_mode == MODE_HANDSHAKE) start_connect(c);
        return;
      }
      const char *req = c->role == ROLE_PUB ? request_pub_buf : request_buf;
      int req_len = c->role == ROLE_PUB ? request_pub_len : request_len;
      ssize_t w = send(c->fd, req, (size_t)req_len, MSG_NOSIGNAL);
      if (w != req_len) {
        handshake_failures++;
        reset_close(c);
        if (opt_mode == MODE_HANDSHAKE) start_connect(c);
        return;
      }
      c->state = C_HANDSHAKE;
      c->out_armed = 0;
      set_events(c, EPOLLIN);
    }
    return;
  }
  if (c->state == C_HANDSHAKE) {
    handle_handshake_bytes(c, t);
    if (opt_mode == MODE_HANDSHAKE && c->state == C_CLOSED && !stop_requested && start_connect(c) < 0)
      handshake_failures++;
    return;
  }
  if (c->state != C_OPEN) return;
  if (events & EPOLLIN) {
    ssize_t r = read(c->fd, readbuf, sizeof readbuf);
    if (r <= 0) {
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (r == 0) server_closes++;
      else errors++;
      reset_close(c);
      return;
    }
    rx_bytes += (uint64_t)r;
    uint32_t done = parse_frames(c, readbuf, (size_t)r, t);
    if (done & 0x80000000u) {
      reset_close(c);
      return;
    }
    if (opt_mode == MODE_ECHO && done > 0) {
      echo_send(c, done, t);
      flush_echo(c);
    }
  }
  if (c->state == C_OPEN && (events & EPOLLOUT)) {
    if (opt_mode == MODE_ECHO || opt_once) flush_echo(c);
    else if (c->role == ROLE_PUB) flush_pub(c);
  }
  if (c->state == C_OPEN && (events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN)) {
    errors++;
    reset_close(c);
  }
}

/* ------------------------------------------------------------------ main loop */

static struct epoll_event events[1024];

static void poll_once(int timeout_ms) {
  int n = epoll_wait(epfd, events, 1024, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return;
    die("epoll_wait");
  }
  for (int i = 0; i < n; i++) handle_event((conn *)events[i].data.ptr, events[i].events);
}

/* Opens conns[from..to) with at most --connect-concurrency handshakes pending. */
static void open_connections(int from, int to, int role, double timeout_s) {
  int next = from;
  int pending = 0;
  uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
  int done_before = connected + handshake_failures;
  for (;;) {
    int settled = connected + (int)handshake_failures - done_before;
    pending = (next - from) - settled;
    while (next < to && pending < opt_connect_concurrency) {
      conn *c = &conns[next];
      if (start_connect(c) < 0) {
        connect_failed++;
        handshake_failures++;
        c->fd = -1;
        c->state = C_CLOSED;
      } else {
        c->role = (uint8_t)role;
      }
      next++;
      pending++;
    }
    settled = connected + (int)handshake_failures - done_before;
    if (settled >= to - from) break;
    if (now_ns() > deadline || stop_requested) {
      fprintf(stderr, "loadgen: connecting timed out (%d of %d settled)\n", settled, to - from);
      break;
    }
    poll_once(5);
  }
}

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --mode echo|sink|handshake|idle --port P [--host 127.0.0.1] [--path /]\n"
          "  [--conns N] [--window W] [--size BYTES | --payload-file F] [--text]\n"
          "  [--deflate-file F --offer 'permessage-deflate; ...'] [--warmup S] [--duration S]\n"
          "  [--server-pid PID] [--sub-path /sub] [--pub-path /pub] [--connect-concurrency C]\n"
          "  [--proto ws|rally|socketio] [--channel NAME] [--ports P1,P2,...]\n"
          "  [--server-pids PID1,PID2,...] [--once]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v != NULL && (++i, 1))
    if (ARG("--mode")) {
      if (strcmp(v, "echo") == 0) opt_mode = MODE_ECHO;
      else if (strcmp(v, "sink") == 0) opt_mode = MODE_SINK;
      else if (strcmp(v, "handshake") == 0) opt_mode = MODE_HANDSHAKE;
      else if (strcmp(v, "idle") == 0) opt_mode = MODE_IDLE;
      else usage();
    } else if (ARG("--host")) opt_host = v;
    else if (ARG("--port")) opt_port = atoi(v);
    else if (ARG("--path")) opt_path = v;
    else if (ARG("--sub-path")) opt_sub_path = v;
    else if (ARG("--pub-path")) opt_pub_path = v;
    else if (ARG("--conns")) opt_conns = atoi(v);
    else if (ARG("--window")) opt_window = atoi(v);
    else if (ARG("--size")) opt_size = (size_t)atol(v);
    else if (ARG("--payload-file")) opt_payload_file = v;
    else if (ARG("--deflate-file")) opt_deflate_file = v;
    else if (ARG("--offer")) opt_offer = v;
    else if (strcmp(a, "--text") == 0) opt_text = 1;
    else if (strcmp(a, "--once") == 0) opt_once = 1;
    else if (ARG("--warmup")) opt_warmup = atof(v);
    else if (ARG("--duration")) opt_duration = atof(v);
    else if (ARG("--server-pid")) opt_server_pid = atoi(v);
    else if (ARG("--server-pids")) {
      if ((n_server_pids = parse_int_list(v, server_pids)) < 1) usage();
    } else if (ARG("--ports")) {
      if ((n_node_ports = parse_int_list(v, node_ports)) < 1) usage();
      opt_port = node_ports[0];
    }
    else if (ARG("--connect-concurrency")) opt_connect_concurrency = atoi(v);
    else if (ARG("--channel")) opt_channel = v;
    else if (ARG("--proto")) {
      if (strcmp(v, "ws") == 0) opt_proto = PROTO_WS;
      else if (strcmp(v, "rally") == 0) opt_proto = PROTO_RALLY;
      else if (strcmp(v, "socketio") == 0) opt_proto = PROTO_SOCKETIO;
      else usage();
    }
    else usage();
#undef ARG
  }
  if (opt_port <= 0 || opt_conns <= 0 || opt_window <= 0) usage();
  if (n_server_pids == 0 && opt_server_pid > 0) server_pids[n_server_pids++] = opt_server_pid;
  if (opt_mode == MODE_SINK && opt_text && opt_proto != PROTO_WS) prefix_cap = PREFIX_MAX;

  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  memset(&server_addr, 0, sizeof server_addr);
  server_addr.sin_family = AF_INET;
  server_addr.sin_port = htons((uint16_t)opt_port);
  if (inet_pton(AF_INET, opt_host, &server_addr.sin_addr) != 1) usage();

  /* A fixed, non-zero masking key: the server unmasks real bytes either way. */
  uint64_t seed = now_ns();
  for (int i = 0; i < 4; i++) mask_key[i] = (uint8_t)((seed >> (i * 8)) | 1);

  request_len = build_request(request_buf, sizeof request_buf,
                              opt_mode == MODE_SINK ? opt_sub_path : opt_path, 1);
  request_pub_len = build_request(request_pub_buf, sizeof request_pub_buf, opt_pub_path, 0);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  conn_total = opt_conns + 1;
  conns = calloc((size_t)conn_total, sizeof(conn));
  for (int i = 0; i < conn_total; i++) conns[i].fd = -1;

  if (opt_mode == MODE_ECHO || opt_once) build_echo_frames();

  uint64_t t_connect0 = now_ns();
  double connect_s = 0;
  if (opt_mode != MODE_HANDSHAKE) {
    open_connections(0, opt_conns, ROLE_PLAIN, 60);
    if (opt_proto != PROTO_WS) {
      /* Publications start only once every open connection is subscribed. */
      uint64_t deadline = now_ns() + 60000000000ull;
      int open_now = 0;
      for (int i = 0; i < opt_conns; i++) open_now += conns[i].state == C_OPEN;
      while (subscribed < open_now && now_ns() < deadline && !stop_requested) {
        poll_once(5);
        open_now = 0;
        for (int i = 0; i < opt_conns; i++) open_now += conns[i].state == C_OPEN;
      }
      if (subscribed < open_now)
        fprintf(stderr, "loadgen: only %d of %d connections subscribed\n", subscribed, open_now);
    }
    if (opt_mode == MODE_SINK) {
      open_connections(opt_conns, opt_conns + 1, ROLE_PUB, 10);
      publisher = &conns[opt_conns];
      if (publisher->state != C_OPEN) {
        fprintf(stderr, "loadgen: publisher connection failed\n");
        return 1;
      }
    }
    connect_s = (double)(now_ns() - t_connect0) / 1e9;
  }
  int opened = 0;
  for (int i = 0; i < opt_conns; i++) opened += conns[i].state == C_OPEN;
  int failed_at_open = (int)handshake_failures;

  uint64_t t0 = now_ns();
  if (opt_mode == MODE_ECHO) {
    for (int i = 0; i < opt_conns; i++) {
      conn *c = &conns[i];
      if (c->state != C_OPEN) continue;
      c->ring = calloc((size_t)opt_window, sizeof(uint64_t));
      echo_send(c, (uint32_t)opt_window, t0);
      flush_echo(c);
    }
  } else if (opt_mode == MODE_HANDSHAKE) {
    for (int i = 0; i < opt_conns; i++)
      if (start_connect(&conns[i]) < 0) handshake_failures++;
  } else if (opt_mode == MODE_SINK) {
    last_delivery_ns = t0;
    pump_triggers(t0);
  } else if (opt_mode == MODE_IDLE) {
    if (opt_once) {
      /* One message on every open connection, and every echo back, before "ready". */
      uint64_t sent = 0;
      for (int i = 0; i < opt_conns; i++) {
        conn *c = &conns[i];
        if (c->state != C_OPEN) continue;
        c->ring = calloc((size_t)opt_window, sizeof(uint64_t));
        echo_send(c, 1, t0);
        flush_echo(c);
        sent++;
      }
      uint64_t deadline = now_ns() + 60000000000ull;
      while (messages < sent && now_ns() < deadline && !stop_requested) poll_once(5);
      if (messages < sent)
        fprintf(stderr, "loadgen: only %llu of %llu echoes came back\n", (unsigned long long)messages,
                (unsigned long long)sent);
      opened = 0;
      for (int i = 0; i < opt_conns; i++) opened += conns[i].state == C_OPEN;
    }
    fprintf(stderr, "ready %d\n", opened);
  }

  double server_cpu0 = -1, self_cpu0 = 0;
  uint64_t t_measure0 = t0, t_measure1 = t0;
  uint64_t warmup_end = t0 + (uint64_t)(opt_warmup * 1e9);
  uint64_t measure_end = warmup_end + (uint64_t)(opt_duration * 1e9);
  if (opt_mode == MODE_IDLE) {
    warmup_end = t0;
    measure_end = t0 + (uint64_t)(opt_duration * 1e9);
  }
  int measuring = 0;
  /* 50 ms: enough samples in a 0.3 s quick window to see a peak, and reading statm ~20 times a
   * second costs the load generator (and the server) nothing measurable. */
  const uint64_t rss_interval = 50000000ull;
  uint64_t next_rss = 0;
  while (!stop_requested) {
    uint64_t t = now_ns();
    if (!measuring && t >= warmup_end) {
      measuring = 1;
      phase_measure = 1;
      messages = rx_bytes = tx_messages = handshakes = 0;
      hist_reset();
      server_cpu0 = servers_cpu_s();
      self_cpu0 = self_cpu_s();
      t_measure0 = now_ns();
      if (n_server_pids > 0) sample_servers_rss();
      next_rss = t_measure0 + rss_interval;
    }
    if (t >= measure_end) break;
    if (measuring && n_server_pids > 0 && t >= next_rss) {
      sample_servers_rss();
      next_rss = t + rss_interval;
    }
    if (opt_mode == MODE_SINK) {
      /* A broadcast lost somewhere (a server that drops for a slow reader) must not stall the
       * loop: after 1 s without progress, stop waiting for what is outstanding. */
      if (t - last_delivery_ns > 1000000000ull && t - last_trigger_ns > 1000000000ull) {
        int64_t expected = (int64_t)trig_sent * opt_conns - (int64_t)deliveries_lost;
        if (expected > (int64_t)deliveries_all) {
          deliveries_lost += (uint64_t)(expected - (int64_t)deliveries_all);
          stalls++;
        }
      }
      pump_triggers(t);
    }
    poll_once(opt_mode == MODE_IDLE ? 50 : 2);
  }
  t_measure1 = now_ns();
  double server_cpu1 = servers_cpu_s();
  double self_cpu1 = self_cpu_s();
  if (n_server_pids > 0) sample_servers_rss();
  double wall = (double)(t_measure1 - t_measure0) / 1e9;
  if (wall <= 0) wall = 1e-9;
  double server_cpu = server_cpu0 >= 0 && server_cpu1 >= 0 ? server_cpu1 - server_cpu0 : -1;
  double self_cpu = self_cpu1 - self_cpu0;
  int still_open = 0;
  for (int i = 0; i < opt_conns; i++) still_open += conns[i].state == C_OPEN;

  for (int i = 0; i < conn_total; i++)
    if (conns[i].fd >= 0) reset_close(&conns[i]);

  const char *mode_name = opt_mode == MODE_ECHO        ? "echo"
                          : opt_mode == MODE_SINK      ? "sink"
                          : opt_mode == MODE_HANDSHAKE ? "handshake"
                                                       : "idle";
  double count = opt_mode == MODE_HANDSHAKE ? (double)handshakes : (double)messages;
  printf("{\"mode\":\"%s\",\"conns\":%d,\"window\":%d,\"opened\":%d,\"open_at_end\":%d,"
         "\"connect_s\":%.3f,\"payload_bytes\":%zu,\"frame_bytes\":%zu,"
         "\"wall_s\":%.4f,\"count\":%.0f,\"per_s\":%.1f,\"rx_bytes\":%llu,\"rx_bytes_per_s\":%.1f,"
         "\"tx_messages\":%llu,\"latency_samples\":%llu,"
         "\"latency_us\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f},"
         "\"server_cpu_s\":%.3f,\"loadgen_cpu_s\":%.3f,\"loadgen_cpu_util\":%.3f,"
         "\"server_rss_start_kib\":%.0f,\"server_rss_end_kib\":%.0f,\"server_rss_peak_kib\":%.0f,"
         "\"server_rss_samples\":%u,"
         "\"errors\":%llu,\"server_closes\":%llu,\"handshake_failures\":%llu,\"failed_at_open\":%d,"
         "\"stalls\":%llu,\"lost\":%llu,\"masked_frames\":%llu,\"subscribed\":%d,\"compressed_frames\":%llu}\n",
         mode_name, opt_conns, opt_window, opened, still_open, connect_s, payload_len, echo_frame_len, wall,
         count, count / wall, (unsigned long long)rx_bytes, (double)rx_bytes / wall,
         (unsigned long long)tx_messages, (unsigned long long)hist_count, hist_percentile(0.5) / 1e3,
         hist_percentile(0.9) / 1e3, hist_percentile(0.99) / 1e3, hist_percentile(0.999) / 1e3,
         (double)hist_max / 1e3, hist_count ? (double)hist_sum / (double)hist_count / 1e3 : 0.0, server_cpu,
         self_cpu, self_cpu / wall, rss_first_kib, rss_last_kib, rss_peak_kib, rss_samples,
         (unsigned long long)errors, (unsigned long long)server_closes,
         (unsigned long long)handshake_failures, failed_at_open, (unsigned long long)stalls,
         (unsigned long long)deliveries_lost, (unsigned long long)masked_frames, subscribed,
         (unsigned long long)compressed_frames);
  return 0;
}
