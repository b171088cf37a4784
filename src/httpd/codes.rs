//! Hook and handler results, and the HTTP statuses the module answers with.

use crate::ffi;

pub const OK: i32 = ffi::OK as i32;
pub const DECLINED: i32 = ffi::DECLINED;
pub const DONE: i32 = ffi::DONE;
pub const BAD_REQUEST: i32 = ffi::HTTP_BAD_REQUEST as i32;
pub const FORBIDDEN: i32 = ffi::HTTP_FORBIDDEN as i32;
pub const UPGRADE_REQUIRED: i32 = ffi::HTTP_UPGRADE_REQUIRED as i32;
pub const INTERNAL_SERVER_ERROR: i32 = ffi::HTTP_INTERNAL_SERVER_ERROR as i32;
pub const BAD_GATEWAY: i32 = ffi::HTTP_BAD_GATEWAY as i32;
pub const SERVICE_UNAVAILABLE: i32 = ffi::HTTP_SERVICE_UNAVAILABLE as i32;
pub const GATEWAY_TIME_OUT: i32 = ffi::HTTP_GATEWAY_TIME_OUT as i32;
pub const SUSPENDED: i32 = ffi::SUSPENDED;
