//! libFuzzer entry point; the checks are in `replbd_fuzz_checks::nbd_parser` (shared with the stable
//! smoke runner `replbd-fuzz-smoke` that CI runs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| replbd_fuzz_checks::nbd_parser::check(data));
