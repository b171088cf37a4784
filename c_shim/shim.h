/*
 * The C that must be C: declarations shared by the shim and the Rust core.
 * No decisions are made in C; it registers, adapts macros and forwards.
 */
#ifndef WST_SHIM_H
#define WST_SHIM_H

#include <httpd.h>
#include <http_config.h>
#include <util_filter.h>
#include <mod_proxy.h>

/* ---- implemented in Rust (src/module.rs), called by httpd through the shim ---- */
extern module AP_MODULE_DECLARE_DATA proxy_wstunnel_module;
void *wst_rs_create_dir_config(apr_pool_t *p, char *dir);
void *wst_rs_merge_dir_config(apr_pool_t *p, void *base, void *add);
void *wst_rs_create_server_config(apr_pool_t *p, server_rec *s);
void *wst_rs_merge_server_config(apr_pool_t *p, void *base, void *add);
const char *wst_rs_cmd_fallback(cmd_parms *cmd, void *dconf, int flag);
const char *wst_rs_cmd_idle_timeout(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_async(cmd_parms *cmd, void *dconf, int flag);
const char *wst_rs_cmd_upgrade_http(cmd_parms *cmd, void *dconf, int flag);
const char *wst_rs_cmd_async_delay(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_async_max(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_async_threads(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_drain_timeout(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_ping_interval(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_ping_timeout(cmd_parms *cmd, void *dconf, const char *arg);
const char *wst_rs_cmd_strict_frames(cmd_parms *cmd, void *dconf, int flag);
const char *wst_rs_cmd_max_message(cmd_parms *cmd, void *dconf, const char *arg);
int wst_rs_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s);
void wst_rs_child_init(apr_pool_t *pchild, server_rec *s);
void wst_rs_child_stopping(apr_pool_t *pchild, int graceful);
int wst_rs_status(request_rec *r, int flags);
void wst_rs_suspend_connection(conn_rec *c, request_rec *r);
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

/* Brigade macros (APR_BRIGADE_*, APR_BUCKET_IS_EOS). */
apr_bucket *wst_brigade_first(apr_bucket_brigade *bb);            /* NULL when empty */
int wst_brigade_starts_with_eos(apr_bucket_brigade *bb);
/* Passes `data` down the filter chain from `f` in a transient bucket (a filter that keeps it
 * sets it aside, copying), followed by a FLUSH if `flush`, then empties `bb`. */
apr_status_t wst_pass_transient(ap_filter_t *f, apr_bucket_brigade *bb, const char *data, apr_size_t len,
                                int flush);
/* The descriptor that tells when a connection has input (ap_get_pollfd_from_conn: its socket,
 * or mod_http2's pipe for a stream); -1 if none. */
int wst_conn_poll_fd(conn_rec *c);

/* mod_logio's optional counters; no-ops when mod_logio is absent. */
void wst_logio_add(conn_rec *c, apr_off_t in, apr_off_t out);

/* AllowEncodedSlashes NoDecode in effect for this request (core_dir_config bitfields). */
int wst_encoded_slashes_nodecode(request_rec *r);



#endif
