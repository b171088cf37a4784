/*
 * The C that must be C: declarations shared by the shim and the Rust core.
 * No decisions are made in C; it registers, adapts macros and forwards.
 */
#ifndef WST_SHIM_H
#define WST_SHIM_H

#include <httpd.h>
#include <http_config.h>
#include <mod_proxy.h>

/* ---- implemented in Rust (src/ffi_entry.rs), called by httpd through the shim ---- */
extern module AP_MODULE_DECLARE_DATA proxy_wstunnel_module;
void *wst_rs_create_dir_config(apr_pool_t *p, char *dir);
void *wst_rs_merge_dir_config(apr_pool_t *p, void *base, void *add);
void *wst_rs_create_server_config(apr_pool_t *p, server_rec *s);
void *wst_rs_merge_server_config(apr_pool_t *p, void *base, void *add);
const char *wst_rs_cmd_fallback(cmd_parms *cmd, void *dconf, int flag);
const char *wst_rs_cmd_idle_timeout(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_async(cmd_parms *cmd, void *dconf, int flag);
const char *wst_rs_cmd_async_delay(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_async_max(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_drain_timeout(cmd_parms *cmd, void *dconf, const char *arg);
int wst_rs_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s);
void wst_rs_child_init(int generation);
void wst_rs_child_exit(int graceful_shutdown_timeout);
apr_size_t wst_rs_status_board_size(int slots);
void wst_rs_status_attach(void *base, int slots);
void wst_rs_status(request_rec *r, int short_report, int tables, int extended);
void wst_rs_child_stopping(int graceful, int graceful_shutdown_timeout);
int wst_rs_check_trans(request_rec *r, const char *url);
int wst_rs_canon(request_rec *r, char *url);
int wst_rs_handler(request_rec *r, proxy_worker *worker, proxy_server_conf *conf, char *url,
                   const char *proxyname, apr_port_t proxyport);

/* ---- implemented in C (c_shim/mod_proxy_wstunnel.c), called by Rust ---- */
/* The directive table and hook registration the Rust module record points at. */
extern const command_rec wst_cmds[];
void wst_register_hooks(apr_pool_t *p);

/* Per-module logging: ap_log_rerror/ap_log_error with this module's index (LogLevel proxy_wstunnel:...). */
int wst_log_r_enabled(const request_rec *r, int level);
void wst_log_r(const char *file, int line, int level, apr_status_t status, const request_rec *r, const char *msg);
int wst_log_s_enabled(const server_rec *s, int level);
void wst_log_s(const char *file, int line, int level, apr_status_t status, const server_rec *s, const char *msg);

/* Module config vectors (ap_get_module_config is a macro). */
void *wst_dir_conf(request_rec *r);
void *wst_srv_conf(server_rec *s);
void *wst_proxy_dir_conf(request_rec *r);

/* Read up to *len bytes from a connection's input filter chain (AP_MODE_READBYTES).
 * On return *len holds the bytes copied. APR_EOF at end of stream, APR_EAGAIN if nothing now. */
apr_status_t wst_conn_read(conn_rec *c, apr_bucket_brigade *bb, char *buf, apr_size_t *len, int block);

/* Send the request head brigade plus our Upgrade/Connection lines and the blank line, flushed. */
int wst_send_head(request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *header_bb, const char *upgrade);

/* mod_logio's optional counters; no-ops when mod_logio is absent. */
void wst_logio_add(conn_rec *c, apr_off_t in, apr_off_t out);

/* Switch a request to tunnel mode: drop HTTP protocol filters and mod_reqtimeout, no keep-alive. */
void wst_enter_tunnel_mode(request_rec *r);

/* The socket fd of a connection (core's socket), or -1. */
int wst_conn_fd(conn_rec *c);

/* conn_rec field accessors that bindgen renders as bitfields. */
void wst_conn_set_aborted(conn_rec *c);

/* The MPM runs worker threads (event, worker), not one request per process (prefork). */
int wst_mpm_is_threaded(void);
/* The MPM is stopping this child (graceful restart or stop): prefork signals a busy child
 * without running child_stopping until its request ends. */
int wst_mpm_stopping(void);
/* httpd as a whole is stopping or restarting (1), or it only retires this child for spare
 * threads (0): threaded MPMs mark a stopping child "quiescing" in the scoreboard, so a
 * sibling of the same generation that is not quiescing means the server goes on. prefork
 * marks nothing: always 1 there. */
int wst_server_draining(void);
int wst_graceful_shutdown_timeout(void);

/* mod_proxy's own filter-aware tunnel, for ends whose bytes httpd's filters must see (TLS,
 * HTTP/2 streams): created once (NULL on failure), then run in slices of `slice` microseconds;
 * each run returns HTTP_GATEWAY_TIME_OUT after a slice without traffic, OK when both
 * directions ended, another status on failure. */
proxy_tunnel_rec *wst_filtered_tunnel_create(request_rec *r, conn_rec *backconn, const char *scheme);
int wst_filtered_tunnel_run(proxy_tunnel_rec *tunnel, apr_interval_time_t slice);

/* The access-log record of an asynchronous tunnel (c_shim/record.c): a compact copy of the
 * request taken at the hand-over (NULL if out of memory), logged through mod_log_config when
 * the tunnel ends (returns 0 when mod_log_config is not loaded), freed either way by
 * wst_record_free. Safe to log from any thread. */
typedef struct wst_record wst_record;
wst_record *wst_record_take(request_rec *r);
int wst_record_log(wst_record *rec, apr_off_t client_to_backend, apr_off_t backend_to_client);
void wst_record_free(wst_record *rec);

/* The watch on a filtered end: an input filter above TLS/HTTP/2 on connection `c` through
 * which every byte mod_proxy's tunnel reads (decrypted) passes. The Rust side decides, per
 * read, whether to read at all (wst_rs_watch_verdict), how many bytes of each bucket go on
 * (wst_rs_watch_read: the rest is dropped) and what to append (wst_rs_watch_closes: a Close
 * frame; it may also write one to `c` itself). Must be removed (wst_watch_remove) before
 * `watch` goes away: connections outlive requests (mod_http2 reuses secondary connections). */
enum { WST_WATCH_READ = 0, WST_WATCH_EOF = 1, WST_WATCH_ABORT = 2 };
#define WST_WATCH_CLOSE_MAX 14
ap_filter_t *wst_watch_add(conn_rec *c, void *watch);
void wst_watch_remove(ap_filter_t *f);
int wst_rs_watch_verdict(void *watch);
apr_size_t wst_rs_watch_read(void *watch, const char *data, apr_size_t len);
apr_size_t wst_rs_watch_closes(void *watch, conn_rec *c, char *buf, apr_size_t cap);
/* Writes `len` bytes to a connection's output filters and flushes; APR status. */
apr_status_t wst_conn_write(conn_rec *c, const char *data, apr_size_t len);

/* AllowEncodedSlashes NoDecode in effect for this request (core_dir_config bitfields). */
int wst_encoded_slashes_nodecode(request_rec *r);

#endif
