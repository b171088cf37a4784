/*
 * mod_proxy_wstunnel-rs: the access-log record of an asynchronous tunnel.
 *
 * A tunnel handed to the asynchronous relay outlives its request: httpd logs the request
 * (101, handshake, bytes until the hand-over) when the handler returns, and the request and
 * its connection are gone when the tunnel ends. So that the end reaches the access logs
 * through the administrator's own CustomLog lines, the request is copied at the hand-over
 * into one compact block (its strings, header and environment tables, addresses) and, when
 * the tunnel ends, rebuilt in a pool of its own and given to mod_log_config's log_transaction
 * hook, and to no other module's: nothing else expects a request that no longer exists.
 *
 * The rebuilt request says: status 101, the original request time (so %D/%T are the whole
 * tunnel's life), the tunnel's bytes each way through mod_logio (%I/%O), and the environment
 * variable "wstunnel-end" (the request's own record carries "wstunnel-handoff"), so
 * `CustomLog ... env=!wstunnel-handoff` logs every tunnel once, at its end.
 *
 * This relies on what a module cannot see from its API: the request and connection records
 * of the running httpd laid out as in the headers the module was built with, and mod_logio's
 * private per-connection record. src/httpd/record.rs checks both at startup (the running
 * httpd's version against the headers', and mod_logio's record by a trial on a scratch
 * connection); when either fails, no record reaches mod_log_config and the error log's
 * WST02011 line is the tunnel's only record.
 */
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <apr_optional.h>
#include <apr_strings.h>
#include <string.h>
#include <stdlib.h>

#include "shim.h"

APLOG_USE_MODULE(proxy_wstunnel);

APR_DECLARE_OPTIONAL_FN(void, ap_logio_add_bytes_in, (conn_rec *c, apr_off_t bytes));
APR_DECLARE_OPTIONAL_FN(void, ap_logio_add_bytes_out, (conn_rec *c, apr_off_t bytes));

/* The request's strings, in this order, then its tables. */
enum {
    S_THE_REQUEST, S_PROTOCOL, S_METHOD, S_URI, S_UNPARSED_URI, S_FILENAME, S_PATH_INFO,
    S_ARGS, S_HOSTNAME, S_USER, S_AUTH_TYPE, S_HANDLER, S_CONTENT_TYPE, S_STATUS_LINE,
    S_LOG_ID, S_USERAGENT_IP, S_CLIENT_IP, S_REMOTE_HOST, S_LOCAL_IP, S_LOCAL_HOST,
    S_CONN_LOG_ID, S_COUNT
};
enum { T_HEADERS_IN, T_HEADERS_OUT, T_ERR_HEADERS_OUT, T_SUBPROCESS_ENV, T_COUNT };

struct wst_record {
    server_rec *server;
    apr_time_t request_time;
    int proto_num;
    int method_number;
    long conn_id;
    int keepalives;
    apr_sockaddr_t client_addr, local_addr, useragent_addr;
    int has_addr[3];
    /* S_COUNT strings, then per table a count and key/value pairs: each a 32-bit length
     * (NO_STRING for NULL), the bytes and a NUL. */
    apr_size_t len;
    char data[];
};

#define NO_STRING 0xffffffffu

typedef struct {
    char *at;         /* NULL while measuring */
    apr_size_t len;
} writer;

static void put_u32(writer *w, apr_uint32_t v)
{
    if (w->at) {
        memcpy(w->at + w->len, &v, sizeof v);
    }
    w->len += sizeof v;
}

static void put_str(writer *w, const char *s)
{
    apr_size_t n = s ? strlen(s) : 0;

    put_u32(w, s ? (apr_uint32_t)n : NO_STRING);
    if (s) {
        if (w->at) {
            memcpy(w->at + w->len, s, n + 1);
        }
        w->len += n + 1;
    }
}

static void put_table(writer *w, const apr_table_t *t)
{
    const apr_array_header_t *a = t ? apr_table_elts(t) : NULL;
    const apr_table_entry_t *e = a ? (const apr_table_entry_t *)a->elts : NULL;
    int i, n = a ? a->nelts : 0;

    put_u32(w, (apr_uint32_t)n);
    for (i = 0; i < n; i++) {
        put_str(w, e[i].key);
        put_str(w, e[i].val);
    }
}

static void put_all(writer *w, request_rec *r)
{
    conn_rec *c = r->connection;
    const char *s[S_COUNT] = {
        r->the_request, r->protocol, r->method, r->uri, r->unparsed_uri, r->filename,
        r->path_info, r->args, r->hostname, r->user, r->ap_auth_type, r->handler,
        r->content_type, r->status_line, r->log_id, r->useragent_ip, c->client_ip,
        c->remote_host, c->local_ip, c->local_host, c->log_id
    };
    const apr_table_t *t[T_COUNT] = { r->headers_in, r->headers_out, r->err_headers_out, r->subprocess_env };
    int i;

    for (i = 0; i < S_COUNT; i++) {
        put_str(w, s[i]);
    }
    for (i = 0; i < T_COUNT; i++) {
        put_table(w, t[i]);
    }
}

wst_record *wst_record_take(request_rec *r)
{
    writer w = { NULL, 0 };
    wst_record *rec;
    conn_rec *c = r->connection;
    const apr_sockaddr_t *addrs[3] = { c->client_addr, c->local_addr, r->useragent_addr };
    apr_sockaddr_t *copies[3];
    int i;

    put_all(&w, r);
    rec = malloc(sizeof *rec + w.len);
    if (rec == NULL) {
        return NULL;
    }
    copies[0] = &rec->client_addr;
    copies[1] = &rec->local_addr;
    copies[2] = &rec->useragent_addr;
    rec->server = r->server;
    rec->request_time = r->request_time;
    rec->proto_num = r->proto_num;
    rec->method_number = r->method_number;
    rec->conn_id = c->id;
    rec->keepalives = c->keepalives;
    for (i = 0; i < 3; i++) {
        rec->has_addr[i] = addrs[i] != NULL;
        if (addrs[i]) {
            *copies[i] = *addrs[i];
        }
    }
    rec->len = w.len;
    w.at = rec->data;
    w.len = 0;
    put_all(&w, r);
    return rec;
}

void wst_record_free(wst_record *rec)
{
    free(rec);
}

typedef struct {
    const char *at;
} reader;

static apr_uint32_t get_u32(reader *rd)
{
    apr_uint32_t v;

    memcpy(&v, rd->at, sizeof v);
    rd->at += sizeof v;
    return v;
}

/* Strings stay where they are: the block outlives the logging. */
static const char *get_str(reader *rd)
{
    apr_uint32_t n = get_u32(rd);
    const char *s;

    if (n == NO_STRING) {
        return NULL;
    }
    s = rd->at;
    rd->at += n + 1;
    return s;
}

static apr_table_t *get_table(reader *rd, apr_pool_t *p)
{
    apr_uint32_t i, n = get_u32(rd);
    apr_table_t *t = apr_table_make(p, (int)n + 1);

    for (i = 0; i < n; i++) {
        const char *k = get_str(rd);
        const char *v = get_str(rd);
        if (k && v) {
            apr_table_addn(t, k, v);
        }
    }
    return t;
}

/* A private copy of an address, its pointers into itself and into the pool fixed. */
static apr_sockaddr_t *addr_in(apr_pool_t *p, const apr_sockaddr_t *src)
{
    apr_sockaddr_t *a = apr_pmemdup(p, src, sizeof *src);

    a->pool = p;
    a->hostname = NULL;
    a->servname = NULL;
    a->next = NULL;
    if (src->ipaddr_ptr) {
        a->ipaddr_ptr = (char *)&a->sa + ((const char *)src->ipaddr_ptr - (const char *)&src->sa);
    }
    return a;
}

/* mod_logio's per-connection record is private to it; record.c gives it a zeroed block of
 * LOGIO_BLOCK bytes and fills it through mod_logio's own functions. Whether that block holds
 * its counters is tried once at startup (wst_record_probe_logio) and decided in Rust. */
#define LOGIO_BLOCK 256

/* mod_log_config's log_transaction hook, or NULL when mod_log_config is not loaded. */
static ap_HOOK_log_transaction_t *log_config_hook(void)
{
    apr_array_header_t *hooks = ap_hook_get_log_transaction();
    ap_LINK_log_transaction_t *h;
    int i;

    if (hooks == NULL) {
        return NULL;
    }
    h = (ap_LINK_log_transaction_t *)hooks->elts;
    for (i = 0; i < hooks->nelts; i++) {
        if (h[i].szName && strcmp(h[i].szName, "mod_log_config.c") == 0) {
            return h[i].pFunc;
        }
    }
    return NULL;
}

int wst_record_has_log_config(void)
{
    return log_config_hook() != NULL;
}

static apr_off_t word_at(const char *block, apr_size_t at)
{
    apr_off_t v;

    memcpy(&v, block + at, sizeof v);
    return v;
}

void wst_record_probe_logio(wst_logio_probe *out)
{
    APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_in) *add_in = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_in);
    APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_out) *add_out = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_out);
    module *logio = ap_find_linked_module("mod_logio.c");
    apr_pool_t *p;
    conn_rec *c;
    char *block;
    apr_size_t at;

    memset(out, 0, sizeof *out);
    out->in_at = out->out_at = -1;
    out->loaded = logio != NULL;
    out->functions = add_in != NULL && add_out != NULL;
    if (!out->loaded || !out->functions || apr_pool_create_unmanaged_ex(&p, NULL, NULL) != APR_SUCCESS) {
        return;
    }
    /* Twice the block, so that a write past it shows. */
    block = apr_pcalloc(p, 2 * LOGIO_BLOCK);
    c = apr_pcalloc(p, sizeof *c);
    c->pool = p;
    c->conn_config = ap_create_conn_config(p);
    ap_set_module_config(c->conn_config, logio, block);
    add_in(c, 1);
    add_out(c, 2);
    for (at = 0; at + sizeof(apr_off_t) <= LOGIO_BLOCK; at += sizeof(apr_off_t)) {
        apr_off_t v = word_at(block, at);
        if (v == 1 && out->in_at < 0) {
            out->in_at = (long)at;
        }
        else if (v == 2 && out->out_at < 0) {
            out->out_at = (long)at;
        }
    }
    for (at = LOGIO_BLOCK; at < 2 * LOGIO_BLOCK; at++) {
        out->beyond |= block[at] != 0;
    }
    apr_pool_destroy(p);
}

int wst_record_log(wst_record *rec, apr_off_t client_to_backend, apr_off_t backend_to_client,
                   const char *const *env)
{
    ap_HOOK_log_transaction_t *hook = log_config_hook();
    APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_in) *add_in = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_in);
    APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_out) *add_out = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_out);
    module *logio = ap_find_linked_module("mod_logio.c");
    apr_pool_t *p;
    request_rec *r;
    conn_rec *c;
    reader rd = { rec->data };
    const char *s[S_COUNT];
    int i;

    if (hook == NULL) {
        return 0;
    }
    /* A pool with an allocator of its own: this runs on the module's relay thread. */
    if (apr_pool_create_unmanaged_ex(&p, NULL, NULL) != APR_SUCCESS) {
        return 0;
    }
    for (i = 0; i < S_COUNT; i++) {
        s[i] = get_str(&rd);
    }
    c = apr_pcalloc(p, sizeof *c);
    c->pool = p;
    c->base_server = rec->server;
    c->id = rec->conn_id;
    c->keepalives = rec->keepalives;
    c->keepalive = AP_CONN_CLOSE;
    c->client_ip = (char *)s[S_CLIENT_IP];
    c->remote_host = (char *)s[S_REMOTE_HOST];
    c->local_ip = (char *)s[S_LOCAL_IP];
    c->local_host = (char *)s[S_LOCAL_HOST];
    c->log_id = s[S_CONN_LOG_ID];
    c->client_addr = rec->has_addr[0] ? addr_in(p, &rec->client_addr) : NULL;
    c->local_addr = rec->has_addr[1] ? addr_in(p, &rec->local_addr) : NULL;
    c->notes = apr_table_make(p, 1);
    c->conn_config = ap_create_conn_config(p);
    if (logio && add_in && add_out) {
        /* mod_logio's per-connection counters start zeroed (as its pre_connection makes
         * them); more room than they need, then filled through its own functions. */
        ap_set_module_config(c->conn_config, logio, apr_pcalloc(p, LOGIO_BLOCK));
        add_in(c, client_to_backend);
        add_out(c, backend_to_client);
    }

    r = apr_pcalloc(p, sizeof *r);
    r->pool = p;
    r->connection = c;
    r->server = rec->server;
    r->request_time = rec->request_time;
    r->proto_num = rec->proto_num;
    r->method_number = rec->method_number;
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->the_request = (char *)s[S_THE_REQUEST];
    r->protocol = (char *)s[S_PROTOCOL];
    r->method = s[S_METHOD];
    r->uri = (char *)s[S_URI];
    r->unparsed_uri = (char *)s[S_UNPARSED_URI];
    r->filename = (char *)s[S_FILENAME];
    r->path_info = (char *)s[S_PATH_INFO];
    r->args = (char *)s[S_ARGS];
    r->hostname = s[S_HOSTNAME];
    r->user = (char *)s[S_USER];
    r->ap_auth_type = (char *)s[S_AUTH_TYPE];
    r->handler = s[S_HANDLER];
    r->content_type = s[S_CONTENT_TYPE];
    r->status_line = s[S_STATUS_LINE];
    r->log_id = s[S_LOG_ID];
    r->useragent_ip = (char *)s[S_USERAGENT_IP];
    r->useragent_addr = rec->has_addr[2] ? addr_in(p, &rec->useragent_addr) : c->client_addr;
    r->headers_in = get_table(&rd, p);
    r->headers_out = get_table(&rd, p);
    r->err_headers_out = get_table(&rd, p);
    r->subprocess_env = get_table(&rd, p);
    apr_table_unset(r->subprocess_env, "wstunnel-handoff");
    apr_table_setn(r->subprocess_env, "wstunnel-end", "1");
    /* The tunnel's own variables (name, value, ..., NULL), copied into the record's pool. */
    for (i = 0; env != NULL && env[i] != NULL && env[i + 1] != NULL; i += 2) {
        apr_table_set(r->subprocess_env, env[i], env[i + 1]);
    }
    r->notes = apr_table_make(p, 1);
    r->trailers_in = apr_table_make(p, 1);
    r->trailers_out = apr_table_make(p, 1);
    /* The server's own directory configuration: the request's merged one was in its pool. */
    r->per_dir_config = rec->server->lookup_defaults;
    r->request_config = ap_create_request_config(p);
    hook(r);
    apr_pool_destroy(p);
    return 1;
}
