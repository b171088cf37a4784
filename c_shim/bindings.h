/* Everything bindgen sees: APR, httpd core, the MPM and scoreboard, mod_proxy and mod_status,
 * as installed by apache2-dev, and the shim. build.rs allow-lists what the code uses. */
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_connection.h>
#include <http_log.h>
#include <http_main.h>
#include <http_protocol.h>
#include <http_request.h>
#include <http_ssl.h>
#include <ap_mmn.h>
#include <ap_mpm.h>
#include <ap_release.h>
#include <mpm_common.h>
#include <scoreboard.h>
#include <apr_shm.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <apr_buckets.h>
#include <apr_uri.h>
#include <mod_proxy.h>
#include <mod_status.h>
#include "shim.h"
