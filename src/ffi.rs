//! The `-sys` layer: bindgen's allow-listed view of APR, httpd and mod_proxy, plus the
//! C shim's helpers (c_shim/shim.h). Nothing here is safe to call directly from module
//! logic; the wrappers in `crate::httpd` are.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code, clippy::all)]
#![allow(unsafe_op_in_unsafe_fn, unnecessary_transmutes)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
