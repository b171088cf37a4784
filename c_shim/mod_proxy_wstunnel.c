/*
 * mod_proxy_wstunnel-rs: the C shim.
 *
 * What lives here is what must be C: the directive table (AP_INIT_* macros), hook
 * registration (APR hook macros and mod_proxy's optional hooks with their ordering),
 * and one-line adapters for httpd and APR macros (config vectors, logging with this
 * module's index, brigades and buckets, optional functions, bitfields). Every decision is
 * made in Rust (src/); the hooks registered here are Rust functions themselves.
 *
 * The module record itself is defined in Rust (src/module.rs): rustc's cdylib version
 * script would hide a C-defined symbol from the dynamic symbol table.
 */
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_connection.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <apr_optional.h>
#include <apr_portable.h>
#include <mod_proxy.h>
#include <mod_status.h>
#include <mpm_common.h>

#include "shim.h"

APLOG_USE_MODULE(proxy_wstunnel);

const command_rec wst_cmds[] = {
    AP_INIT_FLAG("ProxyWebsocketFallbackToProxyHttp", wst_rs_cmd_fallback, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "whether to let mod_proxy_http handle the upgrade and tunnelling (On|Off, default On)"),
    AP_INIT_FLAG("ProxyWebsocketUpgradeHttp", wst_rs_cmd_upgrade_http, NULL, RSRC_CONF | ACCESS_CONF,
                 "also tunnel the WebSocket (upgrade=) requests of mod_proxy_http's http:// and "
                 "https:// workers (On|Off, default Off)"),
    AP_INIT_TAKE1("ProxyWebsocketIdleTimeout", wst_rs_cmd_idle_timeout, NULL, RSRC_CONF,
                  "close a tunnel idle for this long: seconds, or a number with unit ms|s|mi|h; 0 = never"),
    AP_INIT_FLAG("ProxyWebsocketAsync", wst_rs_cmd_async, NULL, RSRC_CONF,
                 "let established tunnels leave the request thread: plain clients under every MPM, TLS clients under event (On|Off, default Off)"),
    AP_INIT_TAKE1("ProxyWebsocketAsyncDelay", wst_rs_cmd_async_delay, NULL, RSRC_CONF,
                  "with ProxyWebsocketAsync: relay this long in the request thread first (default 0)"),
    AP_INIT_TAKE1("ProxyWebsocketAsyncThreads", wst_rs_cmd_async_threads, NULL, RSRC_CONF,
                  "relay threads per child for asynchronous tunnels (default: one per CPU the child may use)"),
    AP_INIT_TAKE1("ProxyWebsocketAsyncMaxTunnels", wst_rs_cmd_async_max, NULL, RSRC_CONF,
                  "asynchronous tunnels per child before new ones stay synchronous (default: from the open-files limit)"),
    AP_INIT_TAKE1("ProxyWebsocketDrainTimeout", wst_rs_cmd_drain_timeout, NULL, RSRC_CONF,
                  "on a graceful restart or stop, end WebSocket tunnels (Close 1001) after this long "
                  "(default: GracefulShutdownTimeout)"),
    AP_INIT_TAKE1("ProxyWebsocketPingInterval", wst_rs_cmd_ping_interval, NULL, RSRC_CONF,
                  "send a WebSocket client quiet for this long a Ping of the module's own "
                  "(number with unit ms|s|mi|h; default 0 = never)"),
    AP_INIT_TAKE1("ProxyWebsocketPingTimeout", wst_rs_cmd_ping_timeout, NULL, RSRC_CONF,
                  "end a tunnel whose client sent nothing this long after a Ping (default: the interval)"),
    AP_INIT_FLAG("ProxyWebsocketStrictFrames", wst_rs_cmd_strict_frames, NULL, RSRC_CONF,
                 "end a WebSocket tunnel on a frame that breaks RFC 6455 section 5 (On|Off, default Off)"),
    AP_INIT_TAKE1("ProxyWebsocketMaxMessageSize", wst_rs_cmd_max_message, NULL, RSRC_CONF,
                  "the largest WebSocket message either side may send, in bytes (K|M|G; default 0 = unlimited)"),
    {NULL}
};

void wst_register_hooks(apr_pool_t *p)
{
    /* Run before mod_proxy_http at the same positions as the stock module, so ws:// and
     * wss:// are ours when fallback is off, and so the scheme handler sees the upgrade
     * requests of http:// and https:// workers first (ProxyWebsocketUpgradeHttp). */
    static const char *const succ[] = { "mod_proxy_http.c", NULL };

    ap_hook_post_config(wst_rs_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(wst_rs_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(wst_rs_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(wst_rs_suspend_connection, NULL, NULL, APR_HOOK_MIDDLE);
    proxy_hook_canon_handler(wst_rs_canon, NULL, succ, APR_HOOK_FIRST);
    proxy_hook_scheme_handler(wst_rs_handler, NULL, succ, APR_HOOK_FIRST);
    proxy_hook_check_trans(wst_rs_check_trans, NULL, succ, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, wst_rs_status, NULL, NULL, APR_HOOK_MIDDLE);
}

int wst_log_r_enabled(const request_rec *r, int level)
{
    return APLOG_R_MODULE_IS_LEVEL(r, APLOG_MODULE_INDEX, level);
}

void wst_log_r(const char *file, int line, int level, apr_status_t status, const request_rec *r,
               const char *msg)
{
    ap_log_rerror_(file, line, APLOG_MODULE_INDEX, level, status, r, "%s", msg);
}

int wst_log_s_enabled(const server_rec *s, int level)
{
    return APLOG_MODULE_IS_LEVEL(s, APLOG_MODULE_INDEX, level);
}

void wst_log_s(const char *file, int line, int level, apr_status_t status, const server_rec *s,
               const char *msg)
{
    ap_log_error_(file, line, APLOG_MODULE_INDEX, level, status, s, "%s", msg);
}

void *wst_dir_conf(request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &proxy_wstunnel_module);
}

void *wst_srv_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &proxy_wstunnel_module);
}

void *wst_proxy_dir_conf(request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &proxy_module);
}

void wst_logio_add(conn_rec *c, apr_off_t in, apr_off_t out)
{
    APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_in) *add_in =
        APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_in);
    APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_out) *add_out =
        APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_out);
    if (add_in && in > 0) {
        add_in(c, in);
    }
    if (add_out && out > 0) {
        add_out(c, out);
    }
}

apr_bucket *wst_brigade_first(apr_bucket_brigade *bb)
{
    return APR_BRIGADE_EMPTY(bb) ? NULL : APR_BRIGADE_FIRST(bb);
}

int wst_brigade_starts_with_eos(apr_bucket_brigade *bb)
{
    return !APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb));
}

apr_status_t wst_pass_transient(ap_filter_t *f, apr_bucket_brigade *bb, const char *data, apr_size_t len,
                                int flush)
{
    apr_status_t rv;
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_transient_create(data, len, bb->bucket_alloc));
    if (flush) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(bb->bucket_alloc));
    }
    rv = ap_pass_brigade(f, bb);
    apr_brigade_cleanup(bb);
    return rv;
}

int wst_conn_poll_fd(conn_rec *c)
{
    apr_pollfd_t pfd = { 0 };
    apr_os_sock_t sock;
    apr_os_file_t file;

    pfd.desc_type = APR_NO_DESC;
    if (ap_get_pollfd_from_conn(c, &pfd, NULL) != APR_SUCCESS) {
        return -1;
    }
    if (pfd.desc_type == APR_POLL_SOCKET && apr_os_sock_get(&sock, pfd.desc.s) == APR_SUCCESS) {
        return sock;
    }
    if (pfd.desc_type == APR_POLL_FILE && apr_os_file_get(&file, pfd.desc.f) == APR_SUCCESS) {
        return file;
    }
    return -1;
}

int wst_encoded_slashes_nodecode(request_rec *r)
{
    core_dir_config *d = ap_get_core_module_config(r->per_dir_config);
    return d->allow_encoded_slashes && !d->decode_encoded_slashes;
}
