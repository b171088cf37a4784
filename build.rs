//! Build script: locate httpd's development files through `apxs`, compile the C shim,
//! and generate allow-listed bindings to APR, httpd and mod_proxy.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Ask apxs for one of its query variables (`apxs -q NAME`).
fn apxs_query(apxs: &str, name: &str) -> String {
    let out = Command::new(apxs).args(["-q", name]).output().unwrap_or_else(|e| {
        panic!("cannot run `{apxs} -q {name}`: {e}; install apache2-dev or set $APXS")
    });
    assert!(out.status.success(), "`{apxs} -q {name}` failed");
    String::from_utf8(out.stdout).expect("apxs output is UTF-8").trim().to_string()
}

fn find_apxs() -> String {
    if let Ok(a) = env::var("APXS") {
        return a;
    }
    for cand in ["apxs", "apxs2", "/usr/bin/apxs", "/usr/bin/apxs2"] {
        if Command::new(cand)
            .args(["-q", "INCLUDEDIR"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            return cand.to_string();
        }
    }
    panic!("apxs not found: install apache2-dev (Debian) or set APXS=/path/to/apxs");
}

fn main() {
    println!("cargo:rerun-if-env-changed=APXS");
    if env::var_os("CARGO_FEATURE_HTTPD").is_none() {
        // The pure core alone (fuzzing): no httpd headers, no shim.
        return;
    }
    println!("cargo:rerun-if-changed=c_shim");
    let apxs = find_apxs();
    let inc = apxs_query(&apxs, "INCLUDEDIR");
    let apr_inc = apxs_query(&apxs, "APR_INCLUDEDIR");
    let apu_inc = apxs_query(&apxs, "APU_INCLUDEDIR");
    // -DLINUX -D_REENTRANT -D_GNU_SOURCE on Debian: the same defines httpd was built with.
    let cppflags = apxs_query(&apxs, "EXTRA_CPPFLAGS");
    let defines: Vec<String> =
        cppflags.split_whitespace().filter(|f| f.starts_with("-D")).map(String::from).collect();
    let mut incs = vec![inc.clone(), apr_inc.clone()];
    if !apu_inc.is_empty() && apu_inc != apr_inc {
        incs.push(apu_inc);
    }

    let mut cc = cc::Build::new();
    cc.file("c_shim/mod_proxy_wstunnel.c")
        .warnings(true)
        .flag_if_supported("-Wno-unused-parameter");
    for i in &incs {
        cc.include(i);
    }
    for d in &defines {
        let d = d.trim_start_matches("-D");
        match d.split_once('=') {
            Some((k, v)) => cc.define(k, v),
            None => cc.define(d, None),
        };
    }
    cc.compile("wstshim");

    let mut b = bindgen::Builder::default()
        .header("c_shim/bindings.h")
        .clang_args(incs.iter().map(|i| format!("-I{i}")))
        .clang_args(defines.iter().cloned())
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .prepend_enum_name(false);
    // Exactly what src/ uses: a name here that nothing calls is an error waiting in a header.
    for t in [
        "request_rec",
        "conn_rec",
        "server_rec",
        "module",
        "command_rec",
        "cmd_parms",
        "proxy_worker",
        "proxy_worker_shared",
        "proxy_conn_rec",
        "proxy_server_conf",
        "proxy_dir_conf",
        "apr_uri_t",
        "apr_bucket_brigade",
        "apr_bucket",
        "ap_filter_t",
        "ap_version_t",
        "process_score",
        "global_score",
        "scoreboard",
        "apr_os_sock_info_t",
        "apr_array_header_t",
        "apr_table_entry_t",
        "apr_sockaddr_t",
        "ap_directive_t",
    ] {
        b = b.allowlist_type(t);
    }
    for f in [
        "ap_proxy_acquire_connection",
        "ap_proxy_determine_connection",
        "ap_proxy_connect_backend",
        "ap_proxy_connection_create_ex",
        "ap_proxy_release_connection",
        "ap_proxy_create_hdrbrgd",
        "ap_proxy_pass_brigade",
        "ap_proxy_canon_netloc",
        "ap_proxy_canonenc_ex",
        "ap_proxy_location_reverse_map",
        "ap_proxy_backend_broke",
        "ap_find_linked_module",
        "ap_get_conn_socket",
        "ap_send_interim_response",
        "ap_rwrite",
        "ap_rflush",
        "ap_get_brigade",
        "ap_pass_brigade",
        "ap_remove_input_filter",
        "ap_remove_input_filter_byhandle",
        "ap_set_content_type",
        "ap_ssl_conn_is_ssl",
        "ap_mpm_query",
        "ap_get_scoreboard_process",
        "ap_retained_data_get",
        "ap_retained_data_create",
        "ap_get_server_revision",
        "ap_state_query",
        "ap_exists_config_define",
        "apr_table_get",
        "apr_table_setn",
        "apr_table_addn",
        "apr_table_clear",
        "apr_pstrmemdup",
        "apr_palloc",
        "apr_brigade_create",
        "apr_brigade_cleanup",
        "apr_brigade_flatten",
        "apr_brigade_write",
        "apr_os_sock_get",
        "apr_socket_timeout_get",
        "apr_socket_timeout_set",
        "apr_shm_create",
        "ap_run_log_transaction",
        "ap_run_create_connection",
        "ap_pre_connection",
        "ap_ssl_bind_outgoing",
        "ap_create_request",
        "apr_os_sock_make",
        "apr_bucket_alloc_create",
        "apr_pool_create_unmanaged_ex",
        "apr_table_unset",
        "apr_sockaddr_info_get",
        "apr_pool_destroy",
        "ap_remove_output_filter_byhandle",
        "ap_shutdown_conn",
        "apr_shm_baseaddr_get",
        "apr_pool_cleanup_register",
        "apr_pool_cleanup_null",
        "ap_proxy_ssl_engine",
        "apr_pool_allocator_get",
        "apr_allocator_max_free_set",
        "wst_.*",
    ] {
        b = b.allowlist_function(f);
    }
    for v in [
        "proxy_module",
        "ap_server_conf",
        "ap_conftree",
        "ap_max_mem_free",
        "ap_scoreboard_image",
        "ap_graceful_shutdown_timeout",
        "ap_pglobal",
        "AP_MODE_READBYTES",
        "APR_(NON)?BLOCK_READ",
        "AP_MPMQ_.*",
        "AP_SQ_.*",
        "AP_SERVER_.*_NUMBER",
        "AP_STATUS_.*",
        "APLOG_.*",
        "HTTP_.*",
        "OK",
        "DECLINED",
        "DONE",
        "MODULE_MAGIC_.*",
        "PROXY_CANONENC_NOENCODEDSLASHENCODING",
        "AP_CONN_CLOSE",
        "enc_path",
        "SUSPENDED",
    ] {
        b = b.allowlist_var(v);
    }
    let bindings = b.generate().expect("bindgen failed on the httpd headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings");
}
