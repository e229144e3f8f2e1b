#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iflow_actix_fuzz::account_file(data));
