/*
 * mod_proxy_wstunnel-rs: the C shim.
 *
 * What lives here is what must be C: the directive table (AP_INIT_* macros), hook
 * registration (APR hook macros and mod_proxy's optional hooks with their ordering),
 * and thin adapters for httpd macros and inline helpers (config vectors, logging with
 * this module's index, brigades). Every decision is made in Rust (src/).
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
#include <mpm_common.h>
#include <ap_mpm.h>
#include <apr_optional.h>
#include <apr_strings.h>
#include <unistd.h>
#include <mod_proxy.h>
#include <mod_status.h>
#include <scoreboard.h>
#include <apr_shm.h>

#include "shim.h"

APLOG_USE_MODULE(proxy_wstunnel);

static ap_filter_rec_t *wst_watch_filter;
static apr_status_t wst_watch_in(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                                  apr_read_type_e block, apr_off_t readbytes);

const command_rec wst_cmds[] = {
    AP_INIT_FLAG("ProxyWebsocketFallbackToProxyHttp", wst_rs_cmd_fallback, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "whether to let mod_proxy_http handle the upgrade and tunnelling (On|Off, default On)"),
    AP_INIT_TAKE1("ProxyWebsocketIdleTimeout", wst_rs_cmd_idle_timeout, NULL, RSRC_CONF,
                  "close a tunnel idle for this long: seconds, or a number with unit ms|s|mi|h; 0 = never"),
    AP_INIT_FLAG("ProxyWebsocketAsync", wst_rs_cmd_async, NULL, RSRC_CONF,
                 "let established plain-socket tunnels leave the request thread (On|Off, default Off)"),
    AP_INIT_TAKE1("ProxyWebsocketAsyncDelay", wst_rs_cmd_async_delay, NULL, RSRC_CONF,
                  "with ProxyWebsocketAsync: relay this long in the request thread first (default 0)"),
    AP_INIT_TAKE1("ProxyWebsocketAsyncMaxTunnels", wst_rs_cmd_async_max, NULL, RSRC_CONF,
                  "asynchronous tunnels per child before new ones stay synchronous (default: from the open-files limit)"),
    AP_INIT_TAKE1("ProxyWebsocketDrainTimeout", wst_rs_cmd_drain_timeout, NULL, RSRC_CONF,
                  "on a graceful restart or stop, end WebSocket tunnels (Close 1001) after this long "
                  "(default: GracefulShutdownTimeout)"),
    {NULL}
};

/* The status board lives in anonymous shared memory made once, in httpd's parent, from its
 * process-wide pool: children inherit it through fork, and it survives graceful restarts, so
 * children of an old generation that are still draining tunnels stay on it. */
typedef struct {
    apr_shm_t *shm;
    int slots;
} wst_board;

static void wst_board_attach(server_rec *s)
{
    wst_board *b = ap_retained_data_get("mod_proxy_wstunnel-board");
    int limit = 0;
    apr_status_t rv;

    if (b == NULL) {
        b = ap_retained_data_create("mod_proxy_wstunnel-board", sizeof *b);
    }
    if (b->shm == NULL) {
        /* One slot per child process httpd may run, twice over for the generations that
         * overlap in a graceful restart, and slot 0 for children that are gone. */
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
        b->slots = 2 * (limit > 0 ? limit : 16) + 1;
        rv = apr_shm_create(&b->shm, wst_rs_status_board_size(b->slots), NULL, ap_pglobal);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         "WST00005: cannot create the shared memory for the tunnels' status: "
                         "mod_status will not show them");
            b->shm = NULL;
            return;
        }
        memset(apr_shm_baseaddr_get(b->shm), 0, wst_rs_status_board_size(b->slots));
    }
    wst_rs_status_attach(apr_shm_baseaddr_get(b->shm), b->slots);
}

static int wst_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    wst_board_attach(s);
    return wst_rs_post_config(pconf, plog, ptemp, s);
}

static int wst_status_hook(request_rec *r, int flags)
{
    wst_rs_status(r, flags & AP_STATUS_SHORT, !(flags & AP_STATUS_NOTABLE), flags & AP_STATUS_EXTENDED);
    return OK;
}

static apr_status_t wst_child_exit(void *unused)
{
    (void)unused;
    wst_rs_child_exit(ap_graceful_shutdown_timeout);
    return APR_SUCCESS;
}

static void wst_child_init(apr_pool_t *pchild, server_rec *s)
{
    int generation = 0;

    (void)s;
    ap_mpm_query(AP_MPMQ_GENERATION, &generation);
    wst_rs_child_init(generation);
    /* Runs when the child process exits, after its worker threads are done. */
    apr_pool_cleanup_register(pchild, NULL, wst_child_exit, apr_pool_cleanup_null);
}

static void wst_child_stopping(apr_pool_t *pchild, int graceful)
{
    (void)pchild;
    /* prefork runs this hook with graceful=0 for graceful stops and restarts too (its child
     * cannot tell them apart), so there every stop drains; an ungraceful stop is still
     * bounded by prefork's own escalation to SIGKILL. */
    if (!wst_mpm_is_threaded()) {
        graceful = 1;
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf,
                 "WST00004: child %" APR_PID_T_FMT " stopping (%s)", getpid(),
                 graceful ? "graceful" : "not graceful");
    wst_rs_child_stopping(graceful, ap_graceful_shutdown_timeout);
}

void wst_register_hooks(apr_pool_t *p)
{
    /* Run before mod_proxy_http at the same positions as the stock module, so ws:// and
     * wss:// are ours when fallback is off. */
    static const char *const succ[] = { "mod_proxy_http.c", NULL };

    ap_hook_post_config(wst_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(wst_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(wst_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    proxy_hook_canon_handler(wst_rs_canon, NULL, succ, APR_HOOK_FIRST);
    proxy_hook_scheme_handler(wst_rs_handler, NULL, succ, APR_HOOK_FIRST);
    proxy_hook_check_trans(wst_rs_check_trans, NULL, succ, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, wst_status_hook, NULL, NULL, APR_HOOK_MIDDLE);
    wst_watch_filter = ap_register_input_filter("WSTUNNEL_WATCH", wst_watch_in, NULL, AP_FTYPE_CONNECTION);
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

apr_status_t wst_conn_read(conn_rec *c, apr_bucket_brigade *bb, char *buf, apr_size_t *len, int block)
{
    apr_status_t rv;
    apr_size_t want = *len;

    *len = 0;
    rv = ap_get_brigade(c->input_filters, bb, AP_MODE_READBYTES,
                        block ? APR_BLOCK_READ : APR_NONBLOCK_READ, want);
    if (rv != APR_SUCCESS) {
        apr_brigade_cleanup(bb);
        return rv;
    }
    if (APR_BRIGADE_EMPTY(bb)) {
        return block ? APR_EOF : APR_EAGAIN;
    }
    if (APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb))) {
        apr_brigade_cleanup(bb);
        return APR_EOF;
    }
    *len = want;
    rv = apr_brigade_flatten(bb, buf, len);
    apr_brigade_cleanup(bb);
    if (rv == APR_SUCCESS && *len == 0) {
        return block ? APR_EOF : APR_EAGAIN;
    }
    return rv;
}

int wst_send_head(request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *header_bb,
                  const char *upgrade)
{
    apr_brigade_printf(header_bb, NULL, NULL, "Upgrade: %s" CRLF "Connection: Upgrade" CRLF CRLF,
                       upgrade);
    return ap_proxy_pass_brigade(backend->connection->bucket_alloc, r, backend,
                                 backend->connection, header_bb, 1);
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

void wst_enter_tunnel_mode(request_rec *r)
{
    conn_rec *c = r->connection;

    /* mod_reqtimeout's body timeout would cut an idle tunnel. */
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    /* No HTTP framing (chunking, error pages, EOS headers) may reach the upgraded stream. */
    r->output_filters = r->proto_output_filters = c->output_filters;
    r->input_filters = r->proto_input_filters = c->input_filters;
    c->keepalive = AP_CONN_CLOSE;
}

int wst_conn_fd(conn_rec *c)
{
    apr_socket_t *s = ap_get_conn_socket(c);
    apr_os_sock_t fd;

    if (!s || apr_os_sock_get(&fd, s) != APR_SUCCESS) {
        return -1;
    }
    return fd;
}

void wst_conn_set_aborted(conn_rec *c)
{
    c->aborted = 1;
}

int wst_mpm_is_threaded(void)
{
    int threaded = AP_MPMQ_NOT_SUPPORTED;

    ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
    return threaded != AP_MPMQ_NOT_SUPPORTED;
}

int wst_mpm_stopping(void)
{
    int state;

    return ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS && state == AP_MPMQ_STOPPING;
}

int wst_server_draining(void)
{
    int limit = 0, mine = 0, i, generation;
    pid_t me = getpid();

    if (!wst_mpm_is_threaded() || ap_scoreboard_image == NULL) {
        return 1;
    }
    generation = ap_scoreboard_image->global->running_generation;
    ap_mpm_query(AP_MPMQ_GENERATION, &mine);
    if (generation != mine) {
        return 1;                 /* a graceful restart: this child is of the old generation */
    }
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
    for (i = 0; i < limit; i++) {
        process_score *ps = ap_get_scoreboard_process(i);
        if (ps->pid > 0 && ps->pid != me && !ps->quiescing && ps->generation == generation) {
            return 0;
        }
    }
    return 1;
}

int wst_graceful_shutdown_timeout(void)
{
    return ap_graceful_shutdown_timeout;
}

proxy_tunnel_rec *wst_filtered_tunnel_create(request_rec *r, conn_rec *backconn, const char *scheme)
{
    proxy_tunnel_rec *tunnel;

    if (ap_proxy_tunnel_create(&tunnel, r, backconn, scheme) != APR_SUCCESS) {
        return NULL;
    }
    /* The tunnel has already received the 101, so anything it relays counts as a reply. */
    tunnel->replied = 1;
    return tunnel;
}

int wst_filtered_tunnel_run(proxy_tunnel_rec *tunnel, apr_interval_time_t slice)
{
    /* The tunnel keeps its state (poll events, half-closes) between calls, so the caller
     * can run it in slices and look at the clock and at child shutdown in between. */
    tunnel->timeout = slice;
    return ap_proxy_tunnel_run(tunnel);
}

/* Drops what the watch refuses of the buckets from `e` on (they were all just read). Returns
 * whether it dropped everything there was (an empty read is passed on as it is: mod_ssl
 * returns one when a record carried no data). */
static int wst_watch_buckets(ap_filter_t *f, apr_bucket *e, apr_bucket_brigade *bb)
{
    int kept = 0, dropped = 0;
    apr_bucket *next;

    for (; e != APR_BRIGADE_SENTINEL(bb); e = next) {
        const char *data;
        apr_size_t len, keep;

        next = APR_BUCKET_NEXT(e);
        if (APR_BUCKET_IS_METADATA(e) || apr_bucket_read(e, &data, &len, APR_BLOCK_READ) != APR_SUCCESS) {
            kept = 1;
            continue;
        }
        keep = wst_rs_watch_read(f->ctx, data, len);
        if (keep == 0 && len > 0) {
            apr_bucket_delete(e);
            dropped = 1;
            continue;
        }
        kept = 1;
        if (keep < len) {
            apr_bucket_split(e, keep);
            next = APR_BUCKET_NEXT(APR_BUCKET_NEXT(e));
            apr_bucket_delete(APR_BUCKET_NEXT(e));
        }
    }
    return dropped && !kept;
}

/* Sees the plaintext mod_proxy's tunnel reads (it sits above mod_ssl and mod_http2's network
 * filters). Bytes pass unchanged, except in a draining child's polite end: see shim.h. */
static apr_status_t wst_watch_in(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                                  apr_read_type_e block, apr_off_t readbytes)
{
    if (mode != AP_MODE_READBYTES) {
        return ap_get_brigade(f->next, bb, mode, block, readbytes);
    }
    for (;;) {
        apr_bucket *before = APR_BRIGADE_EMPTY(bb) ? NULL : APR_BRIGADE_LAST(bb);
        char close[WST_WATCH_CLOSE_MAX];
        apr_size_t close_len;
        apr_status_t rv;
        int all_dropped;

        switch (wst_rs_watch_verdict(f->ctx)) {
        case WST_WATCH_EOF:
            return APR_EOF;
        case WST_WATCH_ABORT:
            return APR_ECONNABORTED;
        }
        rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        all_dropped = wst_watch_buckets(f, before ? APR_BUCKET_NEXT(before) : APR_BRIGADE_FIRST(bb), bb);
        close_len = wst_rs_watch_closes(f->ctx, f->c, close, sizeof close);
        if (close_len > 0) {
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_heap_create(close, close_len, NULL, f->c->bucket_alloc));
            return APR_SUCCESS;
        }
        if (!all_dropped) {
            return APR_SUCCESS;
        }
        /* All of it was dropped: read on, as if it had never come. */
    }
}

ap_filter_t *wst_watch_add(conn_rec *c, void *watch)
{
    return ap_add_input_filter_handle(wst_watch_filter, watch, NULL, c);
}

void wst_watch_remove(ap_filter_t *f)
{
    if (f) {
        ap_remove_input_filter(f);
    }
}

apr_status_t wst_conn_write(conn_rec *c, const char *data, apr_size_t len)
{
    apr_bucket_brigade *bb = apr_brigade_create(c->pool, c->bucket_alloc);
    apr_status_t rv;

    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_heap_create(data, len, NULL, c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(c->bucket_alloc));
    rv = ap_pass_brigade(c->output_filters, bb);
    apr_brigade_destroy(bb);
    return rv;
}

int wst_encoded_slashes_nodecode(request_rec *r)
{
    core_dir_config *d = ap_get_core_module_config(r->per_dir_config);
    return d->allow_encoded_slashes && !d->decode_encoded_slashes;
}
