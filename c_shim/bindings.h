/* Everything bindgen sees: APR, httpd core and mod_proxy, as installed by apache2-dev. */
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_connection.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <http_ssl.h>
#include <ap_mmn.h>
#include <apr_strings.h>
#include <apr_buckets.h>
#include <apr_uri.h>
#include <mod_proxy.h>
#include "shim.h"
