//! libFuzzer entry point; the checks are in `replbd_fuzz_checks::frame_decoder` (shared with the stable
//! smoke runner `replbd-fuzz-smoke` that CI runs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| replbd_fuzz_checks::frame_decoder::check(data));
